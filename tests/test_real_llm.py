"""The real local LLM (Qwen2.5-Coder-1.5B on llama.cpp) plans and answers a cross-modal request.

Runs `hgq ask` exactly as a user does, with no endpoint configured and no Redis reachable:
it must start a private redis-server, the local LLM and one worker per pool, then stop them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_local_llm_plans_and_runs_ocr_then_speech(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "HGQ_", "REDIS_"))}
    env.update({"REDIS_URL": f"redis://127.0.0.1:{dead_port}/0", "HGQ_OUTPUT_DIR": str(tmp_path / "out")})
    proc = subprocess.run(
        [sys.executable, "-m", "planner_service.cli", "ask", "--json", "--file", str(ROOT / "examples" / "sign.png"),
         "Read the text in sign.png and then read that text aloud as speech."],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    run = json.loads(proc.stdout)
    tasks = {t["task"]: t for t in run["plan"]}
    assert "image-to-text" in tasks and "text-to-speech" in tasks, run["plan"]
    assert tasks["image-to-text"]["id"] in tasks["text-to-speech"]["dep"], "speech must wait for the OCR text"
    ocr = run["tasks"][str(tasks["image-to-text"]["id"])]["output"]["text"]
    assert "Closed on Sundays" in ocr
    audio = [a for a in run["artifacts"] if a["kind"] == "audio"]
    assert audio and Path(audio[0]["path"]).stat().st_size > 10_000
    assert run["usage"]["plan"]["calls"] >= 1 and run["usage"]["respond"]["completion_tokens"] > 0
    assert run["response"] and len(run["response"]) > 20
