"""Chat UIs' side prompts are told from users' requests by their shape, across UI versions: the
instructions' wording changes (Open WebUI 0.12's follow-up prompt names its JSON key only after
1,100 characters of guidelines), the "### Task:" header, the chat history and the key do not."""

from __future__ import annotations

import json

from planner_service.api.side_prompts import fallback, side_prompt_kind

GUIDELINES = "\n".join(f"- Guideline {i}: write from the user's point of view and keep it short." for i in range(16))
HISTORY = "<chat_history>\nUSER: Turn the attached picture into a pencil sketch\nASSISTANT: Done.\n</chat_history>"


def _ui_prompt(task: str, output: str) -> str:
    return f"### Task:\n{task}\n### Guidelines:\n{GUIDELINES}\n### Output:\nJSON format: {output}\n### Chat History:\n{HISTORY}"


def test_side_prompts_are_known_by_the_key_they_ask_for() -> None:
    follow_ups = _ui_prompt("Predict 3-5 useful messages this user might naturally send next.",
                            '{ "follow_ups": ["Suggested next message 1", "Suggested next message 2"] }')
    assert len(follow_ups.split('"follow_ups"')[0]) > 1000  # as in Open WebUI 0.12: the key comes late
    assert side_prompt_kind(follow_ups) == "follow_ups"
    assert side_prompt_kind(_ui_prompt("Sum the chat up in a few words.", '{ "title": "your title" }')) == "title"
    assert side_prompt_kind(_ui_prompt("Describe the picture to draw.", '{\n "prompt": "..." }')) == "image_prompt"
    assert side_prompt_kind(_ui_prompt("Suggest searches.", '{ "queries": ["q1"] }')) == "queries"
    assert json.loads(fallback("follow_ups", follow_ups)) == {"follow_ups": []}
    assert json.loads(fallback("image_prompt", follow_ups))["prompt"].startswith("Turn the attached picture")


def test_a_users_own_request_is_not_a_side_prompt() -> None:
    assert side_prompt_kind("suggest a title for my essay") is None
    assert side_prompt_kind('Reply with {"title": "x"} for this text: the weather is lovely') is None
    # a heading and a key, but no chat history to work on: the user's own structured request
    assert side_prompt_kind('### Task:\nclassify this review\n### Output:\n{"text": "label"}') is None
    # the key only inside the history (typed by the user), not in the UI's instructions
    assert side_prompt_kind("### Task:\nplease help\n<chat_history>\nUSER: answer {\"title\": 1}\n</chat_history>") is None
