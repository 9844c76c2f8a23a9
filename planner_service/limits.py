"""Honest limits: when a request needs a kind of model that no live worker serves, say which one
and how to enable it, instead of a substitute result or a generic apology."""

from __future__ import annotations

import re

from shared.catalog import TASK_TYPES

# What a request says when it needs a task type (the planner is never offered an unserved type,
# so the plan cannot show the gap: the request's words do).
NEEDS: list[tuple[str, str, re.Pattern[str]]] = [
    ("text-to-image", "generate an image",
     # "make this picture grayscale", "draw boxes around the cars" work on a picture already given
     re.compile(r"\b(?:draw|paint|illustrate)\b(?! (?:\w+ )?(?:box|boxes|around|bounding|outlines?|on|over)\b)|"
                r"\b(?:generate|create|make|render|design)\b(?! (?:this|that|these|those|the|my|our|your|his|her|its|"
                r"their|it)\b)(?: me)?(?: an?| some)?"
                r"(?: \w+){0,3} (?:image|picture|drawing|illustration|painting|photo|logo|artwork)s?\b")),
    ("text-to-video", "make a video", re.compile(r"\b(?:generate|create|make|render|produce|turn\b.*\binto)\b(?: me)?"
                                                 r"(?: an?| the)?(?: \w+){0,3} (?:video|animation|clip of)\b|"
                                                 r"\banimated (?:clip|video|film|short)\b")),
    ("visual-question-answering", "answer questions about what a picture shows",
     re.compile(r"\bwhat colou?rs? (?:is|are)\b|\bhow many (?!people|persons|faces)\w+ (?:are|is) (?:there|in|on)\b")),
    ("depth-estimation", "estimate depth", re.compile(r"\bdepth\b")),
    ("audio-to-audio", "transform audio", re.compile(r"\b(?:denoise|noise reduction|remove (?:the )?noise|"
                                                     r"separate (?:the )?(?:voices|vocals|speakers))\b")),
]


NEEDS_AN_IMAGE = frozenset({"visual-question-answering"})  # a question about a picture needs the picture


def unserved_needs(request: str, available: set[str], has_image: bool = True) -> list[tuple[str, str]]:
    """(task type, what the user wanted) for each need of the request no live worker serves."""
    text = request.lower()
    return [(task, what) for task, what, cue in NEEDS if task not in available and cue.search(text)
            and (has_image or task not in NEEDS_AN_IMAGE)]


def limits_text(needs: list[tuple[str, str]]) -> str:
    """The user-facing explanation: what is missing, and how to enable it."""
    lines = []
    for task, what in needs:
        if task in TASK_TYPES:
            lines.append(f"I can't {what} here: no running worker serves {task}.")
        else:
            lines.append(f"I can't {what}: hgq has no {task} task type yet.")
    if any(task in TASK_TYPES for task, _ in needs):
        lines.append("To enable it, set HF_TOKEN so the workers can use Hugging Face inference, or declare a model "
                     "or endpoint for that task type in the file HGQ_MODELS_FILE names (docs/models.md), then "
                     "restart the workers.")
    return " ".join(lines)
