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


SHAPES = {
    "chain": [diag(0, [], 0.2), diag(1, [0], 0.2, text="<GENERATED>-0"), diag(2, [1], 0.2, text="<GENERATED>-1")],
    "fan-out": [diag(0, [], 0.2), diag(1, [0], 0.3, text="<GENERATED>-0"), diag(2, [0], 0.3, text="<GENERATED>-0"),
                diag(3, [0], 0.3, text="<GENERATED>-0")],
    "diamond": [diag(0, [], 0.2), diag(1, [0], 0.3, text="<GENERATED>-0"), diag(2, [0], 0.3, text="<GENERATED>-0"),
                diag(3, [1, 2], 0.2, text="<GENERATED>-1", text2="<GENERATED>-2")],
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shapes_run_in_dependency_order(client, fake_llm, shape) -> None:  # type: ignore[no-untyped-def]
    plan = SHAPES[shape]
    view = run_plan(client, plan)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    _assert_order(view, plan)
    assert len(fake_llm.calls("respond")) == 1


def test_outputs_flow_along_edges(client) -> None:  # type: ignore[no-untyped-def]
    view = run_plan(client, SHAPES["diamond"])
    assert view.tasks["3"].output.text == "n3(n1(n0())+n2(n0()))"


def test_fan_out_runs_in_parallel(client) -> None:  # type: ignore[no-untyped-def]
    view = run_plan(client, SHAPES["fan-out"])
    spans = [_span(view, n) for n in (1, 2, 3)]
    assert max(s for s, _ in spans) < min(f for _, f in spans), f"siblings did not overlap: {spans}"


def test_n_shape_starts_each_node_when_its_own_deps_are_done(client) -> None:  # type: ignore[no-untyped-def]
    # A=0 (slow) -> D=3 ; B=1 (fast) -> C=2 ; B -> D.  C must start before A finishes (no level barrier).
    plan = [diag(0, [], 1.0), diag(1, [], 0.1), diag(2, [1], 0.2, text="<GENERATED>-1"),
            diag(3, [0, 1], 0.1, text="<GENERATED>-0", text2="<GENERATED>-1")]
    view = run_plan(client, plan)
    assert view.status == "succeeded"
    _assert_order(view, plan)
    c_start, _ = _span(view, 2)
    _, a_end = _span(view, 0)
    assert c_start < a_end, "C waited for A: a level barrier"
    assert view.tasks["2"].finished_at < a_end


def test_cross_pool_routing(client) -> None:  # type: ignore[no-untyped-def]
    plan = [diag(0, [], pool="vision"), diag(1, [0], pool="audio", text="<GENERATED>-0"),
            diag(2, [1], pool="text", text="<GENERATED>-1")]
    view = run_plan(client, plan)
    assert view.status == "succeeded"
    assert [view.tasks[str(i)].queue for i in range(3)] == ["vision", "audio", "text"]
    assert view.tasks["0"].worker.startswith("vision-") and view.tasks["1"].worker.startswith("audio-")


def test_failure_skips_dependents_and_answer_reports_it(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    plan = [diag(0, [], 0.1, fail="permanent"), diag(1, [0], text="<GENERATED>-0"),
            diag(2, [1], text="<GENERATED>-1"), diag(3, [], 0.3)]
    view = run_plan(client, plan)
    assert view.status == "failed"
    assert [view.tasks[str(i)].status for i in range(4)] == ["failed", "skipped", "skipped", "succeeded"]
    assert "diagnostic permanent failure" in view.tasks["0"].error
    assert view.tasks["0"].attempts == 1  # permanent errors are not retried
    assert view.tasks["1"].started_at is None  # never ran on garbage
    respond = fake_llm.calls("respond")
    assert len(respond) == 1
    prompt = respond[0]["messages"][-1]["content"]
    assert "diagnostic permanent failure" in prompt and "skipped" in prompt
    assert "failed" in view.error or "did not succeed" in view.error


def test_transient_error_is_retried_with_backoff(client) -> None:  # type: ignore[no-untyped-def]
    import uuid

    view = run_plan(client, [diag(0, [], fail="transient", key=uuid.uuid4().hex)])
    assert view.status == "succeeded"
    assert view.tasks["0"].attempts == 2


def test_transient_errors_give_up_after_the_retry_cap(client, settings) -> None:  # type: ignore[no-untyped-def]
    view = run_plan(client, [diag(0, [], fail="always-transient"), diag(1, [0], text="<GENERATED>-0")])
    assert view.status == "failed"
    assert view.tasks["0"].status == "failed" and view.tasks["1"].status == "skipped"
    assert view.tasks["0"].attempts == settings.task_max_retries + 1
    assert "after 3 retries" in view.tasks["0"].error


def test_response_callback_runs_exactly_once_per_run(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    views = [run_plan(client, SHAPES[s]) for s in ("diamond", "fan-out")]
    assert all(v.status == "succeeded" for v in views)
    prompts = [c["messages"][-1]["content"] for c in fake_llm.calls("respond")]
    assert len(prompts) == 2
    events = [e.type for e in client.run(views[0].request_id).events()]
    assert events.count("done") == 1


def test_submission_is_idempotent_with_a_caller_id(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    import uuid

    from shared.plan import parse_plan_json
    from shared.run_models import RequestCreate
    from tests.helpers import wait_final

    rid = uuid.uuid4().hex
    req = RequestCreate(text="x", plan=parse_plan_json([diag(0, [], 0.1)]), request_id=rid)
    assert client.submit(req) == rid
    assert client.submit(req) == rid
    view = wait_final(client, rid)
    assert view.status == "succeeded" and view.tasks["0"].attempts == 1
    assert len(fake_llm.calls("respond")) == 1


def test_cancel_revokes_queued_and_starts_nothing_new(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    import time

    from shared.plan import parse_plan_json
    from shared.run_models import RequestCreate
    from tests.helpers import wait_final

    plan = [diag(0, [], 1.5), diag(1, [0], 0.1, text="<GENERATED>-0"), diag(2, [1], 0.1, text="<GENERATED>-1")]
    rid = client.submit(RequestCreate(text="cancel me", plan=parse_plan_json(plan)))
    deadline = time.monotonic() + 20
    while client.view(rid).tasks.get("0") is None or client.view(rid).tasks["0"].status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.cancel(rid)
    view = wait_final(client, rid)
    assert view.status == "cancelled"
    assert view.tasks["0"].status == "succeeded"  # the running node finished
    assert view.tasks["1"].status == "cancelled" and view.tasks["1"].started_at is None
    assert view.tasks["2"].status == "cancelled"
    assert "cancelled" in view.response
    assert fake_llm.calls("respond") == []  # no LLM answer for a cancelled run


def test_invalid_plan_is_rejected_and_nothing_enqueued(client, settings) -> None:  # type: ignore[no-untyped-def]
    from shared.errors import PlanError
    from shared.keys import runs_index_key
    from shared.plan import parse_plan_json
    from shared.redis_conn import text_redis
    from shared.run_models import RequestCreate

    before = text_redis(settings.redis_url).zcard(runs_index_key(settings.key_prefix))
    with pytest.raises(PlanError, match="cycle"):
        client.submit(RequestCreate(text="x", plan=parse_plan_json([diag(0, [1]), diag(1, [0])])))
    with pytest.raises(PlanError, match="unknown task type 'make-coffee'"):
        client.submit(RequestCreate(text="x", plan=parse_plan_json([{"id": 0, "task": "make-coffee", "args": {}}])))
    assert text_redis(settings.redis_url).zcard(runs_index_key(settings.key_prefix)) == before


def test_sigkill_mid_task_is_redelivered_and_the_run_succeeds(client) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal
    import time

    from shared.plan import parse_plan_json
    from shared.run_models import RequestCreate
    from tests.helpers import wait_final, wait_running

    plan = [diag(0, [], 2.0), diag(1, [0], 0.1, text="<GENERATED>-0")]
    rid = client.submit(RequestCreate(text="survive a kill", plan=parse_plan_json(plan)))
    task = wait_running(client, rid, "0", timeout_s=20)
    time.sleep(0.3)  # mid-task
    os.kill(task.pid, signal.SIGKILL)
    view = wait_final(client, rid, timeout_s=60)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    assert view.tasks["0"].attempts == 2 and view.tasks["0"].pid != task.pid
    assert view.tasks["1"].attempts == 1 and view.tasks["1"].output.text == "n1(n0())"
    statuses = [(e.data["node"], e.data["status"]) for e in client.run(rid).events() if e.type == "task"]
    assert statuses.count((0, "succeeded")) == 1 and statuses.count((1, "succeeded")) == 1
