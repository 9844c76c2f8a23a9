"""A user model for hgq (see examples/my_models.yaml): any function f(inputs, params).

inputs: the task's slots -- a str for text, a workers.expert.Media (.data bytes, .mime) for an
image or audio. params: the task's literal parameters. Return a str, a dict with ExpertResult's
fields (text, labels, boxes, media, data) or an ExpertResult.
"""

from __future__ import annotations

from typing import Any


def reverse_words(inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    words = str(inputs["text"]).split()
    return {"text": " ".join(reversed(words)), "data": {"words": len(words)}}
