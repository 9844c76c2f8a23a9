"""Multi-turn reuse of what an earlier turn read out of a file (planner_service/reuse.py): pure
unit tests; the conversation through the real stack is in tests/test_conversation_reuse.py."""

from __future__ import annotations

from planner_service.reuse import earlier_texts, is_reused, reuse_earlier_texts, texts_of_run
from shared.conversation import EarlierText, Turn
from shared.outputs import ArtifactRef, TaskOutput
from shared.plan import PlanTask, validate_plan

CLIP = ArtifactRef(id="a" * 64, mime="audio/wav", kind="audio", size=100, name="lecture.wav")
OTHER = ArtifactRef(id="b" * 64, mime="audio/wav", kind="audio", size=100, name="other.wav")
UPLOADS = {"lecture.wav": CLIP, "other.wav": OTHER}
TRANSCRIPT = "Plants use sunlight to make food."


def _plan(*tasks: dict[str, object]):  # type: ignore[no-untyped-def]
    return validate_plan([PlanTask.model_validate(t) for t in tasks], UPLOADS)


def _earlier() -> dict[tuple[str, str], str]:
    turn = Turn(run_id="r1", user="u", request="transcribe lecture.wav", answer=TRANSCRIPT,
                texts=[EarlierText(task="automatic-speech-recognition", file=CLIP.id, text=TRANSCRIPT)])
    return earlier_texts([turn])


ASR_THEN_SUMMARY = ({"id": 0, "task": "automatic-speech-recognition", "args": {"audio": "lecture.wav"}},
                    {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}})


def test_a_transcription_done_in_an_earlier_turn_feeds_the_next_task_as_text() -> None:
    plan = reuse_earlier_texts(_plan(*ASR_THEN_SUMMARY), _earlier(), "now shorten it to one line")
    assert [n.task for n in plan.nodes] == ["summarization"]
    summary = plan.nodes[0]
    assert summary.deps == [] and summary.inputs["text"].model_dump() == {"type": "literal", "value": TRANSCRIPT}
    assert summary.args["text"] == TRANSCRIPT


def test_asked_again_or_as_the_result_itself_the_file_is_read_again() -> None:
    earlier = _earlier()
    again = reuse_earlier_texts(_plan(*ASR_THEN_SUMMARY), earlier, "transcribe it again and summarise")
    assert [n.task for n in again.nodes] == ["automatic-speech-recognition", "summarization"]
    leaf = reuse_earlier_texts(_plan(ASR_THEN_SUMMARY[0]), earlier, "what was in lecture.wav?")
    assert [n.task for n in leaf.nodes] == ["automatic-speech-recognition"]


def test_another_file_is_read_as_planned() -> None:
    plan = _plan({"id": 0, "task": "automatic-speech-recognition", "args": {"audio": "other.wav"}},
                 {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}})
    assert not is_reused(plan.nodes[0], _earlier())
    assert reuse_earlier_texts(plan, _earlier(), "summarise the other one") == plan


def test_a_turn_keeps_what_its_reading_tasks_read_and_nothing_else() -> None:
    plan = _plan(*ASR_THEN_SUMMARY)
    outputs = {0: TaskOutput(text=TRANSCRIPT), 1: TaskOutput(text="Plants make food.")}
    texts = texts_of_run(plan, {0: "succeeded", 1: "succeeded"}, outputs)
    assert texts == [EarlierText(task="automatic-speech-recognition", file=CLIP.id, text=TRANSCRIPT)]
    assert texts_of_run(plan, {0: "failed", 1: "skipped"}, {}) == []
