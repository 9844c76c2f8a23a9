"""Steps the request puts in sequence read the step before. In a request that says the steps follow
one another ("then", "after that", "the translated text", "the result"), a later task whose text
input is a literal reads the latest earlier text output nobody reads instead, and one that reads an
earlier output X reads the text a step in between made of X, when nothing reads that text.

A small LLM often gives every task the request's own text ("translate 'X', then summarise it":
translation of X and summarisation of X), so the summary ignores the translation. Kept as it is:
a literal the user gave that task on its own (a quoted passage no earlier task reads), a question
(visual and document question answering read their text as the question), and any request without
a word of sequence ("summarise this and tell me its sentiment" may well mean the original text).
"""

from __future__ import annotations

import re

from shared.catalog import TASK_TYPES
from shared.plan import PlanTask
from shared.plan import generated_ref as _ref

# tasks whose "text" slot is what they work on (for the others it is a question, or a second sentence
# the user gave: the user's own text)
CONTENT_READERS = frozenset((
    "text-classification", "token-classification", "summarization", "translation", "conversational",
    "text-generation", "text2text-generation", "language-detection", "text-to-speech", "text-to-image",
    "question-answering", "sentence-similarity"))

SEQUENCE = re.compile(
    r"\b(?:then|afterwards?|after (?:that|this|which|getting|acquiring|obtaining|extracting|translating|"
    r"summari[sz]ing|transcribing)|next|finally|lastly|subsequently|followed by|once (?:you|it|that|i|we|the)|"
    r"(?:use|using|take|with|from|based on) (?:it|that|this|the (?:result|output|answer)s?)\b|"
    r"the (?:translated|summari[sz]ed|extracted|generated|transcribed|resulting|detected|recogni[sz]ed|rewritten|"
    r"paraphrased|condensed|identified)\b|"
    r"the (?:result|output|answer|summary|translation|transcript(?:ion)?|caption|description)s?\b)", re.I)


def _makes_text(task: PlanTask) -> bool:
    return "text" in getattr(TASK_TYPES.get(task.task), "produces", ())


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _own_passage(value: str, request: str, earlier_literals: set[str]) -> bool:
    """The literal is a passage the user quoted for this task: in the request, and read by no
    earlier task."""
    v = _norm(value)
    return len(v) >= 3 and v in _norm(request) and v not in earlier_literals


def chain_sequenced_steps(tasks: list[PlanTask], request: str) -> list[PlanTask]:
    """The plan with each sequenced step reading the step before (see the module doc)."""
    if len(tasks) < 2 or not SEQUENCE.search(request):
        return tasks
    read = {r for t in tasks for v in t.args.values() if (r := _ref(v)) is not None and r != t.id}
    out: list[PlanTask] = []
    for t in tasks:
        slot = "text" if t.task in CONTENT_READERS else None
        value = t.args.get("text") if slot else None
        if slot and (r := _ref(value)) is not None and r != t.id:
            # it reads an earlier output that a later step already turned into text nobody reads
            # ("transcribe, summarise, then translate the summary": the translation read the transcript)
            # (not a sibling of its own type: "into French and into Spanish" both read the transcript)
            between = [o for o in out if r < o.id and o.id not in read and o.task != t.task and _makes_text(o)
                       and o.task in CONTENT_READERS and _ref(o.args.get("text")) == r]
            if between:
                read.add(between[-1].id)
                t = t.model_copy(update={"args": {**t.args, slot: f"<GENERATED>-{between[-1].id}"}})
        elif slot and isinstance(value, str) and _ref(value) is None:
            earlier = [o for o in out if o.id not in read and _makes_text(o)]
            literals = {_norm(str(v)) for o in out for v in o.args.values() if _ref(v) is None}
            if earlier and not _own_passage(value, request, literals):
                source = earlier[-1].id
                read.add(source)
                t = t.model_copy(update={"args": {**t.args, slot: f"<GENERATED>-{source}"}})
        out.append(t)
    return out
