"""Which demonstrations the planner shows for a request: the bank's closest ones.

Closeness is MiniLM cosine similarity (`shared.minilm`, loaded once per process) when the model
is installed, else word overlap. Only demonstrations whose every task type is offered qualify;
the most similar comes last, next to the request. The choice is deterministic for a request.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

from planner_service.plan_demos import DEMOS, Demo, bank, request_text

log = logging.getLogger(__name__)
DEFAULT_K = 4
MAX_TASKBENCH = 3  # of the k shown, at most this many come from the TaskBench part of the bank
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset({
    "a", "an", "and", "the", "of", "to", "in", "on", "for", "is", "it", "this", "that", "me", "my", "i", "you",
    "can", "could", "please", "with", "what", "which", "then", "also", "from", "be", "are", "as", "at", "by", "do",
    "does", "how",
})

_lock = threading.Lock()
_vectors: object = None  # numpy array of the bank's embeddings, or False when MiniLM is unavailable


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _bank_vectors() -> object:
    global _vectors
    if _vectors is None:
        with _lock:
            if _vectors is None:
                try:
                    from shared.minilm import embed

                    _vectors = embed([request_text(d) for d in bank()])
                except Exception as exc:  # noqa: BLE001 - no MiniLM here: fall back to word overlap
                    log.warning("demonstration retrieval uses word overlap (MiniLM unavailable: %s)", exc)
                    _vectors = False
    return _vectors


def warm() -> None:
    """Load MiniLM and embed the bank now (the LLM worker calls this at start, off the first plan)."""
    _bank_vectors()


def _scores(request: str, indices: Sequence[int]) -> list[float]:
    """Similarity of the request to each demonstration bank()[i] of `indices`."""
    vectors = _bank_vectors()
    if vectors is not False:
        import numpy as np

        from shared.minilm import embed

        sims = np.asarray(vectors) @ embed([request])[0]
        return [float(sims[i]) for i in indices]
    words = _words(request)
    demos = bank()
    scores = []
    for i in indices:
        other = _words(request_text(demos[i]))
        scores.append(len(words & other) / (len(words | other) or 1))
    return scores


def pick_demos(request: str, available: set[str], k: int = DEFAULT_K) -> list[Demo]:
    """The k demonstrations closest to `request` among those the offered task types can run."""
    demos = bank()
    own = len(DEMOS)
    runnable = [i for i, d in enumerate(demos) if all(t["task"] in available for t in d[1])]
    if len(runnable) > k:
        scores = dict(zip(runnable, _scores(request, runnable), strict=True))
        ranked = sorted(runnable, key=lambda i: (-scores[i], i))
        # at least one is hgq's own: TaskBench's conventions alone mislead plain requests
        mine = [i for i in ranked if i < own][:max(k - MAX_TASKBENCH, 0)]
        rest = [i for i in ranked if i not in mine][:k - len(mine)]
        runnable = sorted(mine + rest, key=lambda i: scores[i])
    return [demos[i] for i in runnable]
