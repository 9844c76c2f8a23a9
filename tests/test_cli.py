"""The `hgq` command line, run as a user would (subprocess, real stack)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import diag

HGQ = [sys.executable, "-m", "planner_service.cli"]


def _hgq(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HGQ, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


def test_ask_with_plan_prints_the_whole_run_as_json(stack, hgq_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([diag(0, [], 0.2, pool="vision", text="x"),
                                diag(1, [0], 0.1, pool="audio", text="<GENERATED>-0")]))
    proc = _hgq(["ask", "run my workflow", "--plan", str(plan), "--json"], hgq_env)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["status"] == "succeeded" and run["response"].startswith("ANSWER")
    assert [t["task"] for t in run["plan"]] == ["diag-vision", "diag-audio"]
    assert run["plan"][1]["dep"] == [0] and run["plan"][1]["model"] == "hgq/diag-audio"
    task = run["tasks"]["1"]
    assert task["status"] == "succeeded" and task["queue"] == "audio" and task["attempts"] == 1
    assert task["output"]["text"] == "n1(n0(x))" and task["started_at"] >= run["tasks"]["0"]["finished_at"]
    assert run["usage"]["respond"]["calls"] == 1


def test_ask_shows_progress_without_json(stack, hgq_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([diag(0, [], 0.1, text="x")]))
    proc = _hgq(["ask", "go", "--plan", str(plan)], hgq_env)
    assert proc.returncode == 0, proc.stderr
    assert "[0] diag-text running on text-" in proc.stderr and "[0] diag-text succeeded" in proc.stderr
    assert "ANSWER" in proc.stdout


def test_ask_with_an_invalid_plan_exits_2_with_the_reason(stack, hgq_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "nope.png"}}]))
    proc = _hgq(["ask", "read it", "--plan", str(plan)], hgq_env)
    assert proc.returncode == 2
    assert "'nope.png' is neither an uploaded file" in proc.stderr


def test_ask_exits_nonzero_when_a_task_fails(stack, hgq_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([diag(0, [], fail="permanent")]))
    proc = _hgq(["ask", "fail", "--plan", str(plan), "--json"], hgq_env)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["tasks"]["0"]["status"] == "failed"


def test_ask_starts_and_stops_an_embedded_stack_when_none_runs(hgq_env, fake_llm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    env = {**hgq_env, "REDIS_URL": f"redis://127.0.0.1:{dead_port}/0", "HGQ_HOME": str(tmp_path)}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([diag(0, [], 0.1, text="embedded")]))
    proc = _hgq(["ask", "go", "--plan", str(plan), "--json"], env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"]["0"]["output"]["text"] == "n0(embedded)"
    out = subprocess.run(["pgrep", "-f", f"redis-server 127.0.0.1:{dead_port}|--port {dead_port}"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "", "the private redis-server was left running"
    logs = tmp_path / "logs"
    assert (logs / "redis.log").exists() and (logs / "worker-text.log").exists()


def _dead_redis_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


@pytest.mark.parametrize("args", [["show", "abc123"], ["cancel", "abc123"], ["keys", "list"],
                                  ["keys", "revoke", "nobody"]])
def test_redis_down_is_one_line_naming_the_fix(hgq_env, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    proc = _hgq(args, {**hgq_env, "REDIS_URL": _dead_redis_url()}, timeout=60)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Redis at" in lines[0] and "REDIS_URL" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_invalid_setting_is_one_line_naming_the_variable(hgq_env) -> None:  # type: ignore[no-untyped-def]
    proc = _hgq(["status"], {**hgq_env, "HGQ_API_PORT": "abc"}, timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "HGQ_API_PORT" in lines[0] and "invalid setting" in lines[0], proc.stderr


def test_sigterm_during_ask_cancels_the_run(stack, hgq_env, fake_llm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    # planning streams slowly enough to be stopped (a word a second). A stream is given up between two
    # pieces; the wait for the first piece is not interruptible (llm_client), so the test stops a
    # stream that is flowing, whatever the load and whether the worker's models were still loading
    fake_llm.latency["plan"] = (0.2, 1.0)
    proc = subprocess.Popen([*HGQ, "ask", "do the diagnostic thing"], env={**os.environ, **hgq_env},
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    seen = ""
    while "accepted" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    assert "accepted" in seen, seen
    run_id = seen.split("request ", 1)[1].split()[0]
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130 and f"cancelling {run_id}" in rest, rest
    status, end = "", time.monotonic() + 20  # the planning LLM call is abandoned within a moment, not at once
    while status not in ("cancelled", "failed") and time.monotonic() < end:
        shown = _hgq(["show", run_id, "--json"], hgq_env)
        status = json.loads(shown.stdout)["status"]
        time.sleep(0.5)
    assert status in ("cancelled", "failed"), shown.stdout


def test_up_refuses_a_bad_pool_option_and_an_unreachable_explicit_redis(hgq_env) -> None:  # type: ignore[no-untyped-def]
    bad = _hgq(["up", "--pool", "vision=rocket:3"], hgq_env, timeout=60)
    assert bad.returncode == 2 and "POOL=IMPL[:N]" in bad.stderr, bad.stderr
    down = _hgq(["up", "--no-flower"], {**hgq_env, "REDIS_URL": _dead_redis_url()}, timeout=60)
    assert down.returncode == 1 and "Redis is not reachable" in down.stderr and "REDIS_URL" in down.stderr, down.stderr
    assert "private" in down.stderr  # it says how to get a private one instead of silently starting it


def test_ask_on_a_terminal_shows_a_live_task_table_and_the_answer_as_it_is_written(  # type: ignore[no-untyped-def]
        stack, hgq_env, fake_llm, tmp_path: Path) -> None:
    """On a TTY (a real pseudo-terminal), `hgq ask` draws rich's live view: a status line, the task
    table updating in place, the answer streaming; then the final view replaces it."""
    import pexpect

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([diag(0, [], 0.6, text="x"), diag(1, [0], 0.3, pool="vision", text="<GENERATED>-0")]))
    fake_llm.latency["respond"] = (0.0, 0.05)  # the answer streams word by word
    try:
        child = pexpect.spawn(HGQ[0], [*HGQ[1:], "ask", "go live", "--plan", str(plan)],
                              env={**os.environ, **hgq_env, "TERM": "xterm", "COLUMNS": "120"}, encoding="utf-8",
                              timeout=90, dimensions=(40, 120))
        child.expect(r"hgq: running 2 task\(s\)")  # the plan arrived: the table is drawn
        child.expect(r"diag-text[^\n]*running")  # a row changed in place
        child.expect(r"diag-vision[^\n]*succeeded")
        child.expect("writing the answer")  # the respond stage streams into the live view
        child.expect(r"request \w+: succeeded \(2 task\(s\)")  # the final view
        child.expect("ANSWER for")
        child.expect(pexpect.EOF)
        child.close()
    finally:
        fake_llm.latency.pop("respond", None)
    assert child.exitstatus == 0
