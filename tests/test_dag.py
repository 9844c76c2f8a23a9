"""DAG execution on real workers and real Redis: order, parallelism, failure, cancel, redelivery."""

from __future__ import annotations

import pytest

from tests.helpers import diag, run_plan


def _span(view, node: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    t = view.tasks[str(node)]
    assert t.started_at is not None and t.finished_at is not None, t
    return t.started_at, t.finished_at


def _assert_order(view, plan) -> None:  # type: ignore[no-untyped-def]
    for task in plan:
        start, _ = _span(view, task["id"])
        for dep in task["dep"]:
            if dep >= 0:
                assert _span(view, dep)[1] <= start, f"task {task['id']} started before dep {dep} finished"


def test_single_node(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    view = run_plan(client, [diag(0, [], text="hello")])
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    assert view.tasks["0"].output.text == "n0(hello)"
    assert view.tasks["0"].queue == "text"
    assert view.response and view.response.startswith("ANSWER")
    assert len(fake_llm.calls("respond")) == 1
    assert len(fake_llm.calls("plan")) == 0  # explicit plan: no planning call
