"""Helpers for tests that run requests through the real stack."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from shared.plan import parse_plan_json
from shared.run_models import FINAL_RUN_STATUSES, RequestCreate, RunPublic


def wait_final(client: Any, run_id: str, timeout_s: float = 60) -> RunPublic:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = client.view(run_id)
        if view.status in FINAL_RUN_STATUSES:
            return view
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} not final after {timeout_s}s: {client.view(run_id).model_dump_json()}")


def wait_running(client: Any, run_id: str, node: str = "0", timeout_s: float = 30) -> Any:
    """The node's TaskPublic once it runs in a worker process (its pid known)."""
    deadline = time.monotonic() + timeout_s
    while True:
        task = client.view(run_id).tasks.get(node)
        if task is not None and task.status == "running" and task.pid:
            return task
        assert time.monotonic() < deadline, f"node {node} never started"
        time.sleep(0.05)


def run_plan(client: Any, tasks: list[dict[str, Any]], text: str = "diagnostic request",
             timeout_s: float = 60, **kw: Any) -> RunPublic:
    run_id = client.submit(RequestCreate(text=text, plan=parse_plan_json(tasks), **kw))
    return wait_final(client, run_id, timeout_s)


def diag(node_id: int, deps: list[int], seconds: float = 0.0, pool: str = "text", **args: Any) -> dict[str, Any]:
    return {"id": node_id, "task": f"diag-{pool}", "dep": deps or [-1],
            "args": {"seconds": seconds, "name": f"n{node_id}", **args}}


def needs(expert_class: Any) -> Any:
    """Skip marker: the test needs this expert's packages and model files (`make setup` installs them)."""
    import pytest

    reason = expert_class.unavailable_reason()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def submit_for(http: Any, seconds: float) -> tuple[list[str], Counter[int]]:
    """POST a request every 0.1 s for `seconds`: the ids accepted (202) and the refusals by status.
    Every refusal must be a 503 with Retry-After, never a 500: the outage itself, or the LLM backlog
    that builds while the workers wait for the broker (HGQ_LLM_MAX_BACKLOG), on a slow machine."""
    accepted: list[str] = []
    refused: Counter[int] = Counter()
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        r = http.post("/v1/requests", json={"text": f"please run number {i}"})
        if r.status_code == 202:
            accepted.append(r.json()["request_id"])
        else:
            refused[r.status_code] += 1
            assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0, r.text
            assert r.json()["error"]["type"] in {"service_unavailable", "overloaded_error"}, r.text
        i += 1
        time.sleep(0.1)
    return accepted, refused


def final_statuses(http: Any, run_ids: list[str], timeout_s: float) -> Counter[str]:
    """Wait (through the API) until every run is final, or the timeout: the count of each status."""
    statuses: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = {rid: http.get(f"/v1/requests/{rid}").json()["status"] for rid in run_ids}
        if all(s in FINAL_RUN_STATUSES for s in statuses.values()):
            break
        time.sleep(0.5)
    return Counter(statuses.values())
