"""The answer without an LLM call, when the result itself is the answer.

"Transcribe this recording", "read the text in this photo", "translate this into Spanish",
"read it aloud", "make it black and white": the user wants the transcript, the text, the
translation or the file, and an LLM restating it only adds a call (2 to 20 s here) and a
chance to misquote. Such a run's answer is written from the results directly. A question
(what, how many, which, compare, ...), a failed or skipped task, a result that needs
explaining (labels, boxes, scores) or anything to combine beyond listing still goes to the
LLM. HGQ_DIRECT_ANSWERS=false turns this off.
"""

from __future__ import annotations

import re

from planner_service.responding import bound_text
from shared.artifacts import artifact_file_name
from shared.outputs import TaskOutput
from shared.plan import Node, ValidatedPlan

# Task types whose output is what the user asked for, as it is.
TEXT_RESULTS = {
    "automatic-speech-recognition": "Transcript",
    "image-to-text": "Text",
    "translation": "Translation",
    "summarization": "Summary",
    "text-generation": "",
    "text2text-generation": "",
}
FILE_RESULTS = {"text-to-speech", "text-to-image", "image-to-image", "depth-estimation", "audio-to-audio"}
_MADE = {"text-to-image": "picture", "image-to-image": "edited picture", "depth-estimation": "depth map",
         "audio-to-audio": "processed audio"}

# Words that ask for an explanation, a judgement or a comparison: the LLM answers those.
_ASKS = re.compile(
    r"\?|\b(what|which|why|how|who|whom|whose|where|when|whether|if|compare|compared|comparison|count|"
    r"explain|describe|tell|list|many|much|mean|means|meaning|difference|better|best|worse|same|"
    r"is it|are they|does|did|do you|can you tell|check|verify|answer|opinion|think)\b",
    re.IGNORECASE)


# "Could you transcribe this?" is an instruction said politely, not a question about the result.
_POLITE = re.compile(r"^\s*(?:please\s+)?(?:can|could|would|will)\s+you\s+(?:please\s+|kindly\s+)?"
                     r"(?:help\s+me\s+(?:to\s+)?|assist\s+me\s+(?:in\s+|with\s+|to\s+)?)?", re.IGNORECASE)


def asks_for_an_answer(request: str) -> bool:
    """Whether the request wants the LLM to explain, judge, compare or answer something, sentence
    by sentence; a polite instruction ("Could you transcribe it?") does not count."""
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", request):
        m = _POLITE.match(sentence)
        if m and m.end() > 0:
            sentence = sentence[m.end():].rstrip().rstrip("?")
        if _ASKS.search(sentence):
            return True
    return False


def _source_name(node: Node, plan: ValidatedPlan) -> str | None:
    """The uploaded file a task read, directly or through the tasks before it."""
    for binding in node.inputs.values():
        if binding.type == "upload":
            return binding.ref.name
        if binding.type == "output":
            found = _source_name(plan.node(binding.task), plan)
            if found:
                return found
    return None


def _part(node: Node, plan: ValidatedPlan, outputs: dict[int, TaskOutput]) -> str | None:
    out = outputs.get(node.id)
    if out is None:
        return None
    source = _source_name(node, plan)
    of = f" of {source}" if source else ""
    if node.task in TEXT_RESULTS:
        text = (out.text or "").strip()
        label = TEXT_RESULTS[node.task]
        if not text:
            what = {"automatic-speech-recognition": "speech", "image-to-text": "text"}.get(node.task, "text")
            return f"No {what} was found{' in ' + source if source else ''} (the result is empty)."
        return f"{label}{of}:\n\n{text}" if label else text
    if node.task in FILE_RESULTS and out.artifacts:
        files = ", ".join(artifact_file_name(node.id, ref) for ref in out.artifacts)
        if node.task == "text-to-speech":
            spoken = bound_text(node.inputs["text"], outputs) if "text" in node.inputs else None
            return f"Spoken audio: {files}" + (f"\n\nIt says: {spoken}" if spoken else "")
        what = _MADE.get(node.task, "result")
        style = node.params.get("style") if node.task == "image-to-image" else None
        what = f"{what} ({style})" if style else what
        return f"Here is the {what}" + (f" of {source}" if source else "") + f": {files}."
    return None


def direct_answer(request: str, plan: ValidatedPlan, states: dict[int, str],
                  outputs: dict[int, TaskOutput]) -> str | None:
    """The answer from the results alone, or None when the LLM must write it."""
    if not plan.nodes or asks_for_an_answer(request):
        return None
    if any(states.get(node.id) != "succeeded" for node in plan.nodes):
        return None
    consumed = {b.task for node in plan.nodes for b in node.inputs.values() if b.type == "output"}
    sinks = [node for node in plan.nodes if node.id not in consumed]
    if any(node.task not in TEXT_RESULTS and node.task not in FILE_RESULTS for node in sinks):
        return None
    parts = [_part(node, plan, outputs) for node in sinks]
    if any(part is None for part in parts):
        return None
    return "\n\n".join(p for p in parts if p)
