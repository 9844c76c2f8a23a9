"""The controller LLM under load: no pile-ups, deadlines, cancellation, queue positions, the
backlog limit, and fewer calls. Real HTTP to the scripted endpoint (tests/fake_llm.py), real
Redis, real workers where a run is involved."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from shared.errors import LLMCancelled, LLMDeadlineError, LLMError
from shared.llm_backlog import LLMBacklog
from shared.llm_client import LLM
from shared.redis_conn import text_redis
from shared.run_models import RequestCreate
from tests.helpers import wait_final

MESSAGES = [{"role": "user", "content": "hello"}]
LONG_REPLY = " ".join(f"word{i}" for i in range(400))


def _llm(settings: Any, fake_llm: Any, **over: Any) -> LLM:
    return LLM(settings.model_copy(update={"openai_base_url": fake_llm.url, "llm_retry_backoff_s": 0.01, **over}))


def test_a_timed_out_call_is_not_sent_again_while_the_endpoint_works_on_it(settings, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.delay_s["respond"] = 3.0
    llm = _llm(settings, fake_llm, llm_stage_timeouts={"respond": 1.0})
    t0 = time.monotonic()
    with pytest.raises(LLMDeadlineError, match="deadline of 1 s"):
        llm.chat("respond", MESSAGES)
    assert time.monotonic() - t0 < 2.5
    time.sleep(2.5)  # the endpoint finishes the abandoned call: nothing was queued behind it
    assert len(fake_llm.calls("respond")) == 1


def test_5xx_and_429_are_retried_then_reported(settings, fake_llm) -> None:  # type: ignore[no-untyped-def]
    for code in (503, 429):
        fake_llm.reset()
        fake_llm.status["respond"] = code
        with pytest.raises(LLMError, match="LLM endpoint failed in stage 'respond'"):
            _llm(settings, fake_llm, llm_retries=2).chat("respond", MESSAGES)
        assert len(fake_llm.calls("respond")) == 3, code
    fake_llm.reset()
    fake_llm.status["respond"] = 400  # the request itself is wrong: sending it again cannot help
    with pytest.raises(LLMError):
        _llm(settings, fake_llm, llm_retries=2).chat("respond", MESSAGES)
    assert len(fake_llm.calls("respond")) == 1


def test_a_cancelled_run_closes_its_stream_and_generation_stops(settings, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("respond", LONG_REPLY)
    fake_llm.latency["respond"] = (0.1, 0.02)  # 400 tokens: 8 s if nobody stops it
    cancel_at = time.monotonic() + 0.8
    llm = LLM(settings.model_copy(update={"openai_base_url": fake_llm.url}),
              should_stop=lambda: time.monotonic() > cancel_at)
    pieces: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(LLMCancelled):
        llm.chat("respond", MESSAGES, on_delta=pieces.append)
    assert time.monotonic() - t0 < 2.5
    assert 0 < len(pieces) < 200
    deadline = time.monotonic() + 3
    while not fake_llm.aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_llm.aborted == ["respond"] and fake_llm.finished == []


def test_a_stage_deadline_holds_while_tokens_still_arrive(settings, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("respond", LONG_REPLY)
    fake_llm.latency["respond"] = (0.0, 0.02)  # never silent for long, so no read timeout fires
    t0 = time.monotonic()
    with pytest.raises(LLMDeadlineError, match="while generating"):
        _llm(settings, fake_llm, llm_stage_timeouts={"respond": 1.0}).chat("respond", MESSAGES)
    assert time.monotonic() - t0 < 2.0


def test_a_waiting_call_is_told_how_many_requests_are_ahead(settings, fake_llm) -> None:  # type: ignore[no-untyped-def]
    prefix = f"t-{uuid.uuid4().hex[:6]}"
    backlog = LLMBacklog(text_redis(settings.redis_url), prefix, slots=1, stale_s=60)
    fake_llm.latency["plan"] = (1.5, 0.0)
    fake_llm.latency["respond"] = (1.5, 0.0)
    seen: list[tuple[str, int]] = []
    base = settings.model_copy(update={"openai_base_url": fake_llm.url})
    first = threading.Thread(target=lambda: LLM(base, backlog=backlog).chat("plan", MESSAGES))
    first.start()
    time.sleep(0.3)
    LLM(base, backlog=backlog, on_wait=lambda stage, ahead: seen.append((stage, ahead))).chat("respond", MESSAGES)
    first.join()
    assert ("respond", 1) in seen
    assert backlog.in_flight() == 0  # every call left the backlog


def test_interchangeable_or_clearly_ranked_candidates_need_no_selection_call() -> None:
    from planner_service.selection import rank_models
    from shared.plan import PlanTask, validate_plan
    from shared.registry import ServedModel

    def served(*descriptions: str) -> dict[str, list[ServedModel]]:
        return {"image-to-image": [ServedModel(model_id=f"f/{i}", task="image-to-image", backend="opencv",
                                               description=d) for i, d in enumerate(descriptions)]}

    plan = validate_plan([PlanTask(id=0, task="image-to-image", args={"image": "x.png"})],
                         uploads={"x.png": _image_ref()})
    _, contested = rank_models("brighten my photo please", plan, served("photo filter", "photo filter too"))
    assert contested == {}, "nothing in the request tells two photo filters apart"
    _, contested = rank_models("a watercolor painting look", plan, served("watercolor painting filter", "blur"))
    assert contested == {} and plan.nodes[0].model == "f/0"
    reasons, contested = rank_models("sepia tones, a vintage grain, soft warm light, faded edges and a retro film mood",
                                     plan, served("sepia tones, vintage grain, soft warm light, faded edges, retro film mood",
                                                  "sepia tones, vintage grain, soft warm light, faded edges, retro film"))
    assert set(contested) == {0} and len(contested[0]) == 2, reasons


def _image_ref() -> Any:
    from shared.outputs import ArtifactRef

    return ArtifactRef(id="0" * 64, mime="image/png", kind="image", size=1, name="x.png")


SUMMARY_PLAN = {"tasks": [{"id": 0, "task": "summarization", "dep": [-1], "args": {
    "text": "The venue is booked for May. The budget was approved on Monday. Maria sends the invitations."}}]}


def test_a_result_that_is_the_answer_costs_one_llm_call_in_all(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", SUMMARY_PLAN)
    view = wait_final(client, client.submit(RequestCreate(text="summarise this")))
    assert view.status == "succeeded", view.error
    controller = {s: u.calls for s, u in view.usage.items() if s in ("plan", "select", "respond")}
    assert controller == {"plan": 1}
    assert fake_llm.calls("respond") == []
    summary = view.tasks["0"].output.text
    assert summary and summary in view.response and view.response.startswith("Summary")


def test_a_question_about_the_result_still_gets_a_written_answer(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", SUMMARY_PLAN)
    view = wait_final(client, client.submit(RequestCreate(text="summarise this: who sends the invitations?")))
    assert view.status == "succeeded", view.error
    assert len(fake_llm.calls("respond")) == 1 and view.response.startswith("ANSWER for")


def test_a_failed_plan_stage_is_a_failed_celery_task(client, fake_llm, settings) -> None:  # type: ignore[no-untyped-def]
    """Flower and the task metrics see the stage failed (it raised), not a success."""
    from monitoring.multiproc import DirCollector, metrics_base

    fake_llm.status["plan"] = 500
    view = wait_final(client, client.submit(RequestCreate(text="do the diagnostic thing")))
    assert view.status == "failed"
    base = metrics_base(settings)
    deadline = time.monotonic() + 10
    while True:
        families = {f.name: f for f in DirCollector(base).collect()}
        failures = families.get("hgq_celery_task_failures")
        errors = families.get("hgq_llm_errors")
        got_failure = failures is not None and any(
            s.labels.get("name") == "hgq.llm.plan" and s.labels.get("exception") == "StageFailed" and s.value >= 1
            for s in failures.samples)
        got_error = errors is not None and any(s.labels.get("stage") == "plan" and s.value >= 1
                                               for s in errors.samples)
        if (got_failure and got_error) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert got_failure and got_error


def test_past_the_llm_backlog_the_api_answers_503_with_retry_after(stack, settings, fake_llm) -> None:  # type: ignore[no-untyped-def]
    from planner_service.api import create_api
    from planner_service.auth import ApiKeys
    from tests.test_api import ThreadServer, api_settings_for_tests

    key, _ = ApiKeys(text_redis(settings.redis_url), settings.key_prefix).create(f"busy-{uuid.uuid4().hex[:6]}")
    server = ThreadServer(create_api(settings, api_settings_for_tests(llm_max_backlog=1))).start()
    fake_llm.latency["plan"] = (3.0, 0.0)
    calls = LLMBacklog(text_redis(settings.redis_url), settings.key_prefix, 0, 600)
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            first = http.post("/v1/requests", json={"text": "do the diagnostic thing"})
            assert first.status_code == 202, first.text
            deadline = time.monotonic() + 10
            while calls.in_flight() == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            busy = http.post("/v1/requests", json={"text": "and another thing"})
            assert busy.status_code == 503, busy.text
            assert int(busy.headers["Retry-After"]) >= 1
            assert "HGQ_LLM_MAX_BACKLOG" in busy.json()["error"]["message"]
            rid = first.json()["request_id"]
            deadline = time.monotonic() + 30
            while http.get(f"/v1/requests/{rid}").json()["status"] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert http.post("/v1/requests", json={"text": "now there is room"}).status_code == 202
    finally:
        server.stop()


# --- the streamed plan ------------------------------------------------------------------------------
def _planned_at(settings: Any, run_id: str) -> float:
    from shared.run_store import RunStore

    meta = RunStore(text_redis(settings.redis_url), settings.key_prefix, run_id, 60).meta()
    return float(meta["planned_at"])


def test_a_streamed_plan_starts_its_root_task_before_the_plan_ends(client, fake_llm, settings) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import diag

    plan = {"tasks": [diag(0, [], 1.0, text="first"), diag(1, [0], 0.0, text="<GENERATED>-0"),
                      diag(2, [1], 0.0, text="<GENERATED>-1", key=" ".join(["padding"] * 40))]}
    fake_llm.script("plan", plan)
    fake_llm.latency["plan"] = (0.4, 0.04)  # ~90 tokens: the plan streams for about 4 s
    t0 = time.time()
    view = wait_final(client, client.submit(RequestCreate(text="do the diagnostic chain")), timeout_s=60)
    assert view.status == "succeeded", view.error
    started = view.tasks["0"].started_at
    planned = _planned_at(settings, view.request_id)
    assert started is not None and started < planned - 1.0, (started - t0, planned - t0)
    assert [t["id"] for t in view.plan] == [0, 1, 2] and view.tasks["2"].status == "succeeded"
    # the chain's second task starts as soon as the first is done, while the plan still streams
    second, first_done = view.tasks["1"].started_at, view.tasks["0"].finished_at
    assert second is not None and first_done is not None and first_done <= second < planned - 0.5, \
        (first_done - t0, second - t0, planned - t0)
    assert view.tasks["1"].output.text == "n1(n0(first))" and view.tasks["2"].output.text == "n2(n1(n0(first)))"


def test_a_streamed_plan_whose_early_task_fails_skips_its_dependents_and_says_why(client, fake_llm, settings) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import diag

    plan = {"tasks": [diag(0, [], 0.0, fail="permanent"), diag(1, [0], 0.0, text="<GENERATED>-0"),
                      diag(2, [], 0.0, text="independent", key=" ".join(["padding"] * 30))]}
    fake_llm.script("plan", plan)
    fake_llm.latency["plan"] = (0.2, 0.03)
    view = wait_final(client, client.submit(RequestCreate(text="do the failing diagnostic chain")), timeout_s=60)
    assert view.status == "failed"
    planned = _planned_at(settings, view.request_id)
    assert (view.tasks["0"].finished_at or planned) < planned, "the root failed while the plan streamed"
    assert view.tasks["0"].status == "failed" and "permanent failure" in (view.tasks["0"].error or "")
    assert view.tasks["1"].status == "skipped" and view.tasks["2"].status == "succeeded"
    from shared.run_store import RunStore

    events = RunStore(text_redis(settings.redis_url), settings.key_prefix, view.request_id, 60).events()
    skipped = [e for e in events if e.type == "task" and e.data.get("node") == 1 and e.data["status"] == "skipped"]
    assert [e.data.get("error") for e in skipped] == ["dependency task 0 failed"]


def test_a_plan_whose_every_task_ran_while_it_streamed_still_gets_its_answer(client, fake_llm, settings) -> None:  # type: ignore[no-untyped-def]
    import json

    from tests.helpers import diag

    # a model that pads its answer: the task's object is complete 40 chunks (1.2 s) before the stream ends
    fake_llm.script("plan", json.dumps({"tasks": [diag(0, [], 0.0, text="quick")]}) + " " * 40)
    fake_llm.latency["plan"] = (0.2, 0.03)
    view = wait_final(client, client.submit(RequestCreate(text="the quick diagnostic")), timeout_s=60)
    assert view.status == "succeeded", view.error
    assert (view.tasks["0"].finished_at or 1e12) < _planned_at(settings, view.request_id)
    assert view.tasks["0"].output.text == "n0(quick)" and view.response


def test_an_invalid_streamed_plan_drops_what_started_and_repairs(client, fake_llm, settings) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import diag

    bad = {"tasks": [diag(0, [], 0.5, text="early guess"), {"id": 1, "task": "no-such-task", "dep": [0],
                                                              "args": {"text": "<GENERATED>-0"}}]}
    good = {"tasks": [diag(0, [], 0.0, text="the repaired one")]}
    fake_llm.script("plan", bad, good)
    fake_llm.latency["plan"] = (0.2, 0.03)
    view = wait_final(client, client.submit(RequestCreate(text="do the diagnostic thing twice")), timeout_s=60)
    assert view.status == "succeeded", view.error
    assert len(fake_llm.calls("plan")) == 2  # the repair round ran
    assert list(view.tasks) == ["1"], "the early task was dropped; the repaired task got a fresh id"
    assert "the repaired one" in (view.tasks["1"].output.text or "")
    assert "early guess" not in (view.response or "")
    from shared.run_store import RunStore

    run = RunStore(text_redis(settings.redis_url), settings.key_prefix, view.request_id, 60)
    assert run.node_states()[0] == "cancelled" and 0 not in run.outputs()


def test_one_llm_object_serving_many_plans_gets_a_fresh_deadline_for_each(settings, fake_llm) -> None:  # type: ignore[no-untyped-def]
    """An evaluation plans many requests with one LLM object: each plan has the whole stage deadline."""
    from planner_service.planning import plan_request
    from shared.catalog import TASK_TYPES

    fake_llm.latency["plan"] = (0.6, 0.0)
    llm = _llm(settings, fake_llm, llm_stage_timeouts={"plan": 1.0})
    for _ in range(3):  # 3 x 0.6 s > 1 s: a deadline counted from the first call would fail the third
        plan_request(llm, "please run the diagnostic", {}, {t for t in TASK_TYPES if t.startswith("diag-")})
