"""`hgq up` runs the whole stack in the foreground; `hgq ask` uses it; SIGTERM stops all it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import diag

ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def test_up_serves_ask_and_stops_everything_on_sigterm(hgq_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    api_port, flower_port = _port(), _port()
    # its own Redis DB: Celery's queues (text, vision, ...) are per DB, and other tests' workers use DB 0
    redis_db2 = hgq_env["REDIS_URL"].rsplit("/", 1)[0] + "/2"
    env = {**os.environ, **hgq_env, "REDIS_URL": redis_db2, "HGQ_HOME": str(tmp_path), "HGQ_API_AUTH": "0",
           "HGQ_API_PORT": str(api_port), "HGQ_FLOWER_PORT": str(flower_port)}
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen([sys.executable, "-m", "planner_service.cli", "up", "--pool", "vision=threads:5"],
                          env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while b"hgq is up" not in (tmp_path / "up.log").read_bytes():
            assert up.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{api_port}/readyz").json()["ready"] is True
        assert httpx.get(f"http://127.0.0.1:{flower_port}/healthcheck").status_code == 200
        caps = httpx.get(f"http://127.0.0.1:{api_port}/v1/capabilities").json()
        assert caps["pools"]["vision"] == 5, caps["pools"]  # --pool vision=threads:5
        spawned = _children(up.pid)
        assert len(spawned) >= 6, spawned  # 4 pool workers, the API, Flower
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps([diag(0, [], 0.1, text="up")]))
        ask = subprocess.run([sys.executable, "-m", "planner_service.cli", "ask", "go", "--plan", str(plan), "--json"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert ask.returncode == 0, ask.stderr
        assert "starting an embedded one" not in ask.stderr  # it used the running stack
        assert json.loads(ask.stdout)["tasks"]["0"]["output"]["text"] == "n0(up)"
    finally:
        stopping = time.monotonic()
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=90)
    stopped_in = time.monotonic() - stopping
    assert up.returncode == 0
    assert stopped_in < 20, f"idle pools took {stopped_in:.1f} s to stop after SIGTERM"
    time.sleep(0.5)
    alive = [p for p in spawned if Path(f"/proc/{p}").exists()]
    assert alive == [], f"left running: {alive}"
    assert "stopping" in (tmp_path / "up.log").read_text()
