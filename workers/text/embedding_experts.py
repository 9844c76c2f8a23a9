"""Sentence-embedding experts on one MiniLM per process: zero-shot labels, similarity, retrieval QA.

all-MiniLM-L6-v2 maps a text to a unit vector (384 dims); cosine similarity is a dot product.
It was trained with a contrastive loss at scale 20, so `softmax(20 * cosine)` turns the
similarities of a text to candidate labels into calibrated-looking label scores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.errors import ExpertError
from shared.minilm import embed, minilm
from shared.model_files import MINILM, model_unavailable_reason
from shared.outputs import ExpertResult, Label
from workers.expert import Expert, InputValue, register
from workers.text.experts import _missing, _text

if TYPE_CHECKING:
    pass

MINILM_ID = MINILM.repo_id  # "sentence-transformers/all-MiniLM-L6-v2"
LOGIT_SCALE = 20.0  # the scale MiniLM's contrastive training used: softmax(20 * cos)
LABEL_TEMPLATE = "This text is about {}."
MAX_LABELS = 50
MAX_PASSAGES = 2000  # sentences of a QA context that are embedded
TOP_PASSAGES = 3
def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def minilm_unavailable() -> str | None:
    return _missing("sentence_transformers", "sentence-transformers") or model_unavailable_reason(MINILM)


class _MiniLMExpert(Expert):
    pool = "text"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return minilm_unavailable()

    def _load(self) -> None:
        minilm()


# --- zero-shot classification ----------------------------------------------------------------


def parse_labels(raw: object) -> list[str]:
    """Comma-separated candidate labels, deduplicated (case-insensitively), order kept."""
    seen: dict[str, str] = {}
    for part in str(raw or "").split(","):
        label = part.strip()
        if label and label.lower() not in seen:
            seen[label.lower()] = label
    return list(seen.values())


def zero_shot(text: str, labels: Sequence[str], template: str = LABEL_TEMPLATE) -> list[Label]:
    """Labels by softmax(20 * cosine(text, template(label))), best first."""
    vectors = embed([text, *(template.format(label) for label in labels)])
    probs = softmax(LOGIT_SCALE * (vectors[1:] @ vectors[0]))
    ranked = sorted(zip(labels, probs, strict=True), key=lambda lp: float(lp[1]), reverse=True)
    return [Label(label=label, score=round(float(p), 4)) for label, p in ranked]


@register
class MiniLMZeroShot(_MiniLMExpert):
    model_id = f"{MINILM_ID}:zero-shot"
    task = "text-classification"
    description = ("zero-shot topic labels with all-MiniLM-L6-v2 sentence embeddings: picks the best of the "
                   "comma-separated candidate labels given in `labels` (English)")
    required_params = frozenset({"labels"})

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        text = _text(inputs)
        labels = parse_labels(params.get("labels"))
        if len(labels) < 2:
            raise ExpertError(f"{self.model_id} needs the parameter 'labels': at least 2 comma-separated candidate "
                              f"labels (got {labels or 'none'})")
        if len(labels) > MAX_LABELS:
            raise ExpertError(f"too many candidate labels ({len(labels)}, max {MAX_LABELS})")
        self.ensure_loaded()
        ranked = zero_shot(text, labels)
        return ExpertResult(text=ranked[0].label, labels=ranked, data={"template": LABEL_TEMPLATE})


# --- sentence similarity ---------------------------------------------------------------------------


@register
class MiniLMSimilarity(_MiniLMExpert):
    model_id = MINILM_ID
    task = "sentence-similarity"
    description = "cosine similarity of two texts' all-MiniLM-L6-v2 sentence embeddings (-1..1; paraphrases ~0.8+)"

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        first, second = _text(inputs, "text"), _text(inputs, "text2")
        self.ensure_loaded()
        vectors = embed([first, second])
        score = round(float(np.clip(vectors[0] @ vectors[1], -1.0, 1.0)), 4)
        return ExpertResult(text=f"{score:.2f}", data={"similarity": score})


# --- question answering by retrieval ---------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Sr|Jr|vs|etc|No|Inc|Ltd|Co|e\.g|i\.e)|\b[A-Z])\.$")


def _sentences(line: str) -> list[str]:
    out: list[str] = []
    for piece in _SENTENCE_END.split(line):
        if out and _ABBREVIATION.search(out[-1]):  # "Dr. Who": not a sentence end
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def _lines(context: str) -> list[str]:
    """Lines, with hard-wrapped ones (no end punctuation, next starts in lower case) joined back."""
    out: list[str] = []
    for line in (raw.strip() for raw in context.splitlines()):
        if out and out[-1] and line[:1].islower() and not out[-1].endswith((".", "!", "?", ":", ";")):
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
    return out


def passages(context: str) -> list[str]:
    """Sentences (and lines: OCR text has no full stops) of a context, in order."""
    parts = (re.sub(r"\s+", " ", s).strip() for line in _lines(context) for s in _sentences(line))
    return [p for p in parts if p and re.search(r"\w", p)]


def answer_from_context(question: str, context: str) -> tuple[str, float, list[dict[str, Any]]]:
    """The context sentence closest to the question: (answer, cosine score, top passages with scores)."""
    found = passages(context)[:MAX_PASSAGES]
    if not found:
        raise ExpertError("the context has no sentences to answer from")
    vectors = embed([question, *found])
    sims = vectors[1:] @ vectors[0]
    order = np.argsort(-sims, kind="stable")[:TOP_PASSAGES]
    top = [{"text": found[i], "score": round(float(sims[i]), 4), "index": int(i)} for i in order]
    return top[0]["text"], top[0]["score"], top


@register
class MiniLMRetrievalQA(_MiniLMExpert):
    model_id = f"{MINILM_ID}:retrieval-qa"
    task = "question-answering"
    description = ("extractive question answering by retrieval: returns the sentence of the context closest to "
                   "the question (all-MiniLM-L6-v2 embeddings); quotes, never invents")

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        context, question = _text(inputs, "text"), _text(inputs, "question")
        self.ensure_loaded()
        answer, score, top = answer_from_context(question, context)
        return ExpertResult(text=answer, data={"score": score, "passages": top})
