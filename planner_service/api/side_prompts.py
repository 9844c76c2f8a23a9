"""Chat UIs' side prompts: recognised and answered with one LLM call, without a run.

Open WebUI, LibreChat and similar UIs send extra completions of their own beside the user's
message: a chat title, tags, follow-up suggestions, a query for their web search. Each would
otherwise become a whole hgq run (planning, tasks, an answer) and count against the user's
limits. They are recognised by the instructions those UIs send, answered by the LLM directly on
the LLM queue (`hgq.llm.side`), and, when the LLM is busy or down, by a plain fallback built from
the conversation, so the UI never shows an error for its own housekeeping.
"""

from __future__ import annotations

import json
import re

from celery import Celery

from planner_service.api.text_blocks import blocks
from shared.task_names import SIDE_TASK

# The opening instructions of the side prompts of common chat UIs (matched on the last user message).
_SIDE = [
    ("title", re.compile(r"^#+\s*task:?\s*\n?.{0,200}\btitle\b", re.I | re.S)),  # Open WebUI
    ("tags", re.compile(r"^#+\s*task:?\s*\n?.{0,200}\btags?\b", re.I | re.S)),
    ("follow_ups", re.compile(r"^#+\s*task:?\s*\n?.{0,200}\bfollow[- ]?up", re.I | re.S)),
    ("queries", re.compile(r"^#+\s*task:?\s*\n?.{0,300}\b(?:search quer|queries)", re.I | re.S)),
    ("autocomplete", re.compile(r"^#+\s*task:?\s*\n?.{0,300}\bautocomplet", re.I | re.S)),
    ("title", re.compile(r"^(?:please\s+)?(?:generate|write|create)\s+a\s+(?:concise|short|brief)[^\n]{0,60}"
                         r"\btitle\b[^\n]{0,80}\bconversation", re.I)),  # LibreChat and others
]
# A "### Task:" prompt over a chat history whose output format names the JSON key it wants: the
# instructions' wording changes between UI versions (Open WebUI 0.12's follow-ups prompt names its
# key only after 1,100 characters of guidelines), the key does not.
_UI_TASK = re.compile(r"^#+\s*task\b", re.I)
_OUTPUT_KEY = re.compile(r'\{\s*"(title|tags|follow_ups|queries|text|prompt)"\s*:')
_KEY_KIND = {"title": "title", "tags": "tags", "follow_ups": "follow_ups", "queries": "queries",
             "text": "autocomplete", "prompt": "image_prompt"}
SIDE_MAX_TOKENS = 120
SIDE_TIMEOUT_S = 30.0


def side_prompt_kind(last_user_text: str) -> str | None:
    """Which side prompt this is ("title", "tags", "follow_ups", "queries", "autocomplete",
    "image_prompt"), or None."""
    text = last_user_text.lstrip()
    at = text.lower().find("<chat_history>")
    instructions = text if at < 0 else text[:at]  # what the UI asks, not words the user typed in the history
    if (kind := next((kind for kind, pattern in _SIDE if pattern.search(instructions[:600])), None)) is not None:
        return kind
    if at < 0 or not _UI_TASK.match(text):
        return None
    keys = _OUTPUT_KEY.findall(instructions)
    return _KEY_KIND[keys[0]] if keys else None


def _first_user_words(history: str, n: int = 6) -> str:
    m = re.search(r"^USER:\s*(.+)$", history, re.M)
    words = (m.group(1) if m else history).split()[:n]
    return " ".join(words).strip(" .,:;!?\"'") or "New chat"


def fallback(kind: str, last_user_text: str) -> str:
    """An answer of the shape the UI asked for, from the conversation itself (no LLM)."""
    found = blocks(last_user_text, "chat_history")
    history = found[0][2] if found else ""
    if kind == "title":
        return json.dumps({"title": _first_user_words(history)})
    if kind == "tags":
        return json.dumps({"tags": ["General"]})
    if kind == "follow_ups":
        return json.dumps({"follow_ups": []})
    if kind == "queries":
        return json.dumps({"queries": []})
    if kind == "image_prompt":
        return json.dumps({"prompt": _first_user_words(history, 30)})
    return ""


def answer(app: Celery, kind: str, messages: list[dict[str, str]], last_user_text: str) -> str:
    """The LLM's answer to a side prompt, or the fallback when the LLM queue does not answer in time."""
    try:
        # expires: one still queued when the caller has given up is dropped, not generated for nobody
        result = app.send_task(SIDE_TASK, args=[messages, SIDE_MAX_TOKENS], expires=SIDE_TIMEOUT_S)
        text = str(result.get(timeout=SIDE_TIMEOUT_S, propagate=True))
        result.forget()
        return text.strip() or fallback(kind, last_user_text)
    except Exception:  # noqa: BLE001 - a busy, failed or missing LLM: the UI still gets a well-formed answer
        return fallback(kind, last_user_text)
