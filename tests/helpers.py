"""Helpers for tests that run requests through the real stack."""

from __future__ import annotations

import time
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
