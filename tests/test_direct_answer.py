"""The answer without an LLM call: when the result itself answers the request (pure unit tests)."""

from __future__ import annotations

import pytest

from planner_service.direct_answer import asks_for_an_answer, direct_answer
from shared.outputs import ArtifactRef, TaskOutput
from shared.plan import parse_plan_json, validate_plan


@pytest.mark.parametrize("request_text", [
    "Could you transcribe memo.wav?",
    "Can you help me summarise this article? 'The council met on Monday and approved the new park.'",
    "Would you please translate 'Guten Morgen' into English?",
    "Transcribe it, please.",
])
def test_polite_instructions_are_not_questions(request_text: str) -> None:
    assert not asks_for_an_answer(request_text)


@pytest.mark.parametrize("request_text", [
    "What is said in memo.wav?",
    "Could you tell me what the sign says?",
    "Transcribe memo.wav. Is the speaker angry?",
    "Can you check whether the two texts mean the same?",
    "How many people are in the photo?",
])
def test_questions_about_the_result_go_to_the_llm(request_text: str) -> None:
    assert asks_for_an_answer(request_text)


def test_a_politely_asked_transcript_is_answered_from_the_result() -> None:
    uploads = {"memo.wav": ArtifactRef(id="a" * 64, mime="audio/wav", kind="audio", size=10, name="memo.wav")}
    plan = validate_plan(parse_plan_json([{"id": 0, "task": "automatic-speech-recognition", "dep": [-1],
                                           "args": {"audio": "memo.wav"}}]), uploads)
    out = {0: TaskOutput(text="Meet at noon on Friday.")}
    answer = direct_answer("Could you transcribe memo.wav for me?", plan, {0: "succeeded"}, out)
    assert answer == "Transcript of memo.wav:\n\nMeet at noon on Friday."
    assert direct_answer("Could you transcribe memo.wav and tell me when we meet?", plan, {0: "succeeded"}, out) is None
    assert direct_answer("Could you transcribe memo.wav?", plan, {0: "failed"}, out) is None


def test_an_edited_picture_is_named_by_what_was_done_and_to_which_file() -> None:
    uploads = {"sign.png": ArtifactRef(id="b" * 64, mime="image/png", kind="image", size=10, name="sign.png")}
    plan = validate_plan(parse_plan_json([{"id": 0, "task": "image-to-image", "dep": [-1],
                                           "args": {"image": "sign.png", "style": "pencil sketch"}}]), uploads)
    made = ArtifactRef(id="c" * 64, mime="image/png", kind="image", size=10, name="out.png")
    answer = direct_answer("Turn sign.png into a pencil sketch", plan, {0: "succeeded"},
                           {0: TaskOutput(artifacts=[made])})
    assert answer is not None and answer.startswith("Here is the edited picture (pencil sketch) of sign.png: task0-")
