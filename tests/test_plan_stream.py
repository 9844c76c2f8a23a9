"""The streamed plan's pure parts: tasks parsed out of a plan as it streams, and the final plan's
ids made to agree with the tasks that started early (runs through the real stack are in
tests/test_llm_serving.py)."""

from __future__ import annotations

import json

from planner_service.plan_stream import TaskStream, remap_onto_early
from shared.plan import PlanTask, validate_plan


def _plan(*tasks: dict[str, object]):  # type: ignore[no-untyped-def]
    return validate_plan([PlanTask.model_validate(t) for t in tasks])


def _t(node_id: int, deps: list[int], **args: object) -> dict[str, object]:
    return {"id": node_id, "task": "translation", "dep": deps or [-1], "args": args}


def test_each_task_object_comes_out_once_when_its_last_brace_arrives() -> None:
    text = json.dumps({"tasks": [_t(0, [], text="a {brace} in \"quotes\""), _t(1, [0], text="<GENERATED>-0")]})
    stream, seen = TaskStream(), []
    for i in range(0, len(text), 7):
        seen.extend(stream.feed(text[i:i + 7]))
    assert [t["id"] for t in seen] == [0, 1]
    assert seen[0]["args"] == {"text": "a {brace} in \"quotes\""}


def test_a_final_plan_that_keeps_an_early_chain_keeps_its_ids() -> None:
    early = _plan(_t(0, [], text="long text"), _t(1, [0], text="<GENERATED>-0"))
    # the final plan numbers them differently and adds a task
    final = _plan(_t(5, [], text="long text"), _t(6, [5], text="<GENERATED>-5"), _t(0, [6], text="<GENERATED>-6"))
    plan, kept, dropped = remap_onto_early(final, early)
    assert kept == {0, 1} and dropped == set()
    by_id = plan.by_id()
    assert by_id[0].args == {"text": "long text"} and by_id[1].deps == [0]
    third = next(n for n in plan.nodes if n.id not in (0, 1))
    assert third.deps == [1] and third.args == {"text": "<GENERATED>-1"}


def test_an_early_dependent_whose_input_changed_is_dropped_and_its_replacement_gets_a_fresh_id() -> None:
    early = _plan(_t(0, [], text="long text"), _t(1, [0], text="<GENERATED>-0", target="French"))
    final = _plan(_t(0, [], text="long text"), _t(1, [0], text="<GENERATED>-0", target="German"))
    plan, kept, dropped = remap_onto_early(final, early)
    assert kept == {0} and dropped == {1}
    assert [n.id for n in plan.nodes] == [0, 2] and plan.node(2).deps == [0] and plan.node(2).params == {"target": "German"}


def test_an_early_dependent_of_a_dropped_root_is_dropped_too() -> None:
    early = _plan(_t(0, [], text="first guess"), _t(1, [0], text="<GENERATED>-0"))
    final = _plan(_t(0, [], text="second guess"), _t(1, [0], text="<GENERATED>-0"))
    plan, kept, dropped = remap_onto_early(final, early)
    assert kept == set() and dropped == {0, 1}
    assert {n.id for n in plan.nodes}.isdisjoint({0, 1})
