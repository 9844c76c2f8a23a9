"""Plan validation (pure unit tests: no Redis, no workers)."""

from __future__ import annotations

import pytest

from shared.errors import PlanError
from shared.outputs import ArtifactRef
from shared.plan import parse_plan_json, validate_plan

WAV = ArtifactRef(id="a" * 64, mime="audio/wav", kind="audio", size=10, name="memo.wav")
PNG = ArtifactRef(id="b" * 64, mime="image/png", kind="image", size=10, name="scan.png")
UPLOADS = {"memo.wav": WAV, "/home/me/memo.wav": WAV, "scan.png": PNG}


def _problems(tasks, uploads=UPLOADS, available=None) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(PlanError) as err:
        validate_plan(parse_plan_json(tasks), uploads, available)
    return str(err.value)


def test_valid_cross_modal_chain_binds_uploads_and_outputs() -> None:
    plan = validate_plan(parse_plan_json([
        {"id": 0, "task": "automatic-speech-recognition", "dep": [-1], "args": {"audio": "/home/me/memo.wav"}},
        {"id": 1, "task": "summarization", "dep": [-1], "args": {"text": "<GENERATED>-0"}},
        {"id": 2, "task": "text-to-speech", "dep": [1], "args": {"text": "<GENERATED> - 1"}},
    ]), UPLOADS)
    assert plan.node(0).inputs["audio"].ref == WAV  # type: ignore[union-attr]
    assert plan.node(1).deps == [0]  # a reference implies the dependency the LLM forgot
    assert plan.node(2).inputs["text"].task == 1  # type: ignore[union-attr]
    assert plan.roots() == [0] and plan.descendants(0) == [1, 2]


def test_unknown_task_type() -> None:
    assert "unknown task type 'make-coffee'" in _problems([{"id": 0, "task": "make-coffee", "args": {}}])


def test_task_not_served_by_a_live_worker() -> None:
    msg = _problems([{"id": 0, "task": "text-to-image", "args": {"text": "a cat"}}], available={"summarization"})
    assert "no live worker serves this task type" in msg


def test_arg_of_the_wrong_type() -> None:
    msg = _problems([
        {"id": 0, "task": "text-to-speech", "args": {"text": "hi"}},
        {"id": 1, "task": "image-to-text", "dep": [0], "args": {"image": "<GENERATED>-0"}},
    ])
    assert "arg 'image' needs image but task 0 (text-to-speech) produces audio" in msg


def test_upload_of_the_wrong_kind_and_unknown_file() -> None:
    assert "needs an image but 'memo.wav' is audio/wav" in _problems(
        [{"id": 0, "task": "image-to-text", "args": {"image": "memo.wav"}}])
    assert "'/etc/passwd' is neither an uploaded file" in _problems(
        [{"id": 0, "task": "image-to-text", "args": {"image": "/etc/passwd"}}])


def test_unknown_arg_and_missing_required_arg() -> None:
    msg = _problems([{"id": 0, "task": "summarization", "args": {"txt": "x"}}])
    assert "unknown arg 'txt'" in msg and "missing required arg 'text'" in msg


def test_dep_on_missing_task_self_dep_and_cycle() -> None:
    assert "depends on missing task 7" in _problems([{"id": 0, "task": "summarization", "dep": [7],
                                                      "args": {"text": "x"}}])
    assert "depends on itself" in _problems([{"id": 0, "task": "summarization", "dep": [0], "args": {"text": "x"}}])
    assert "cycle" in _problems([
        {"id": 0, "task": "summarization", "dep": [1], "args": {"text": "x"}},
        {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "x"}},
    ])


def test_duplicate_ids_and_malformed_json() -> None:
    assert "duplicate task ids [0]" in _problems([
        {"id": 0, "task": "summarization", "args": {"text": "x"}},
        {"id": 0, "task": "summarization", "args": {"text": "y"}},
    ])
    with pytest.raises(PlanError, match="not JSON"):
        parse_plan_json("[{")
    with pytest.raises(PlanError, match="0.task"):
        parse_plan_json([{"id": 0}])
    with pytest.raises(PlanError, match="Extra inputs"):
        parse_plan_json([{"id": 0, "task": "summarization", "colour": "red"}])


def test_planner_demonstrations_are_valid_plans_and_include_a_two_input_join() -> None:
    import re

    from planner_service.plan_demos import DEMOS
    from shared.catalog import TASK_TYPES

    offered = {name for name, spec in TASK_TYPES.items() if not spec.diagnostic}
    joins = 0
    for request, tasks in DEMOS:
        files = re.findall(r"(\S+\.\w+) \((image|audio)\)", request)
        uploads = {name: ArtifactRef(id="0" * 64, mime=f"{kind}/x", kind=kind, size=1, name=name)  # type: ignore[arg-type]
                   for name, kind in files}
        plan = validate_plan(parse_plan_json(tasks), uploads, offered)  # raises PlanError when invalid
        joins += sum(len(node.deps) >= 2 for node in plan.nodes)
    assert joins >= 1
