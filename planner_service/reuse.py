"""Multi-turn: what an earlier turn already read out of a file is reused, not read again.

"Transcribe lecture.wav", then "now shorten it to one line": the 1.5B planner often plans the
transcription again in the second turn. Each turn keeps the text its reading tasks (speech to
text, text in an image) got out of each file (`Turn.texts`, by the file's content hash); a later
plan whose reading task only feeds other tasks gets that text as their literal input instead, and
the reading task is left out. A reading task that is itself the result (asked again, or a leaf),
or a request that asks to do it again, runs as planned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from shared.conversation import EarlierText, Turn
from shared.outputs import TaskOutput
from shared.plan import LiteralBinding, Node, ValidatedPlan

READING_TASKS = frozenset({"automatic-speech-recognition", "image-to-text"})
_AGAIN = re.compile(r"\b(again|once more|re-?(?:transcribe|read|run|do|scan)|redo|fresh|from scratch)\b", re.I)


def _reading_file(node: Node) -> str | None:
    """The content hash of the one file a reading task reads, if it reads an uploaded file."""
    if node.task not in READING_TASKS or node.params:
        return None
    files = [b.ref.id for b in node.inputs.values() if b.type == "upload"]
    return files[0] if len(files) == 1 and len(node.inputs) == 1 else None


def earlier_texts(turns: Iterable[Turn]) -> dict[tuple[str, str], str]:
    """(task type, file hash) -> the text it gave, newest turn last (so it wins)."""
    out: dict[tuple[str, str], str] = {}
    for turn in turns:
        for item in turn.texts:
            out[(item.task, item.file)] = item.text
    return out


def is_reused(node: Node, earlier: Mapping[tuple[str, str], str]) -> bool:
    """Could this task's output come from an earlier turn (it is a reading task of a file read before)?"""
    file = _reading_file(node)
    return file is not None and (node.task, file) in earlier


def reuse_earlier_texts(plan: ValidatedPlan, earlier: Mapping[tuple[str, str], str],
                        request: str) -> ValidatedPlan:
    """The plan with each reading task of a file read in an earlier turn, that only feeds other
    tasks, left out: they get its text as a literal input."""
    if not earlier or _AGAIN.search(request):
        return plan
    texts: dict[int, str] = {}
    for node in plan.nodes:
        file = _reading_file(node)
        if file is not None and (node.task, file) in earlier and plan.successors(node.id):
            texts[node.id] = earlier[(node.task, file)]
    if not texts:
        return plan
    nodes = []
    for node in plan.nodes:
        if node.id in texts:
            continue
        inputs, args = dict(node.inputs), dict(node.args)
        for slot, binding in node.inputs.items():
            if binding.type == "output" and binding.task in texts:
                inputs[slot] = LiteralBinding(value=texts[binding.task])
                args[slot] = texts[binding.task]
        nodes.append(node.model_copy(update={"inputs": inputs, "args": args,
                                             "deps": [d for d in node.deps if d not in texts]}))
    return ValidatedPlan(nodes=nodes, routes=plan.routes)


def texts_of_run(plan: ValidatedPlan, states: Mapping[int, str], outputs: Mapping[int, TaskOutput]) -> list[EarlierText]:
    """What this run's reading tasks read out of their files, for the conversation's later turns."""
    out = []
    for node in plan.nodes:
        file = _reading_file(node)
        output = outputs.get(node.id)
        if file is not None and states.get(node.id) == "succeeded" and output is not None and output.text:
            out.append(EarlierText(task=node.task, file=file, text=output.text))
    return out
