"""A whole worker (main process and its children) killed mid-task: its node runs again on another
worker within about twice the lease, not after the broker's visibility timeout (minutes)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import diag
from tests.test_broker_restart import _Redis

pytestmark = pytest.mark.timeout(300)


def test_a_killed_worker_s_node_runs_again_within_twice_the_lease(fake_llm, hgq_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from planner_service.client import HgqClient
    from planner_service.publisher import publisher_app
    from planner_service.stack import Stack
    from shared.run_models import RequestCreate
    from shared.settings import Settings
    from tests.helpers import wait_final, wait_running

    redis_server = _Redis(tmp_path)
    redis_server.start()
    lease_s = 2.0
    env = {**hgq_env, "REDIS_URL": redis_server.url, "HGQ_HOME": str(tmp_path / "home"),
           "HGQ_LEASE_S": str(lease_s), "HGQ_WORKER_HEARTBEAT_S": "0.5"}
    settings = Settings(redis_url=redis_server.url, openai_base_url=fake_llm.url, openai_api_key="k",  # type: ignore[call-arg]
                        llm_model="fake-llm", diagnostics=True, preload_models=False, lease_s=lease_s,
                        home=tmp_path / "home")
    fake_llm.script("plan", json.dumps({"tasks": [diag(0, [], 4.0, text="slow"), diag(1, [0], 0.1, text="<GENERATED>-0")]}))
    try:
        with Stack(settings, say=lambda m: None, log_dir=tmp_path / "logs") as stack:
            stack.env.update(env)
            stack.start_workers(("text", "llm"), concurrency=1)
            stack.start_workers(("text",), concurrency=1)  # a second text worker to take over
            client = HgqClient(settings, publisher_app(settings))
            rid = client.submit(RequestCreate(text="run the slow one"))
            task = wait_running(client, rid, "0", timeout_s=30)
            victim = next(p for name, p in stack.procs if name == "worker-text" and _is_parent_of(p.pid, task.pid))
            time.sleep(0.5)
            os.killpg(victim.pid, signal.SIGKILL)  # the main process and its children
            killed_at = time.time()
            view = wait_final(client, rid, timeout_s=60)
            assert view.status == "succeeded", view.model_dump_json(indent=1)
            again = view.tasks["0"]
            assert again.attempts == 2 and again.worker != task.worker
            took = (again.started_at or 0) - killed_at
            print(f"whole-worker kill: node 0 ran again on {again.worker} {took:.1f} s later (lease {lease_s} s)")
            assert took < 2 * lease_s + 3, took  # lease expiry + heartbeat expiry + one reaper round
            assert view.tasks["1"].output.text == "n1(n0(slow))"
    finally:
        redis_server.stop()


def _is_parent_of(parent: int, pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == parent
