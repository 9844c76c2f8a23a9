"""User model functions registered through HGQ_MODELS_FILE in tests (backend: python)."""

from __future__ import annotations

from typing import Any


def reverse_words(inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    words = str(inputs["text"]).split()
    return {"text": " ".join(reversed(words)), "data": {"words": len(words)}}


def broken_summary(inputs: dict[str, Any], params: dict[str, Any]) -> str:
    raise RuntimeError("this summariser is broken")
