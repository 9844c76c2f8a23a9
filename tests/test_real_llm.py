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
    assert run["usage"]["plan"]["calls"] >= 1
    # the spoken file is the answer: written from the results, with no second LLM call
    assert "respond" not in run["usage"], run["usage"]
    assert Path(audio[0]["path"]).name in run["response"] and "Closed on Sundays" in run["response"]


def test_two_users_plan_at_once_through_the_embedded_server() -> None:
    """llama.cpp's server with parallel slots: two real planning calls at the same time both succeed."""
    import threading

    from planner_service.planning import plan_request
    from shared.catalog import TASK_TYPES
    from shared.llm_client import LLM
    from shared.llm_model_file import resolve_gguf
    from shared.llm_server import LocalLLMServer, llama_server_binary
    from shared.outputs import ArtifactRef
    from shared.settings import Settings

    if llama_server_binary() is None:
        pytest.skip("llama-server is not built (make setup builds it)")
    settings = Settings(_env_file=None, local_llm_parallel=2)  # type: ignore[call-arg]
    available = {t for t in TASK_TYPES if not t.startswith("diag-")}
    requests = [
        ("Please write down what is said in interview.wav.", {"interview.wav": ArtifactRef(
            id="1" * 64, mime="audio/wav", kind="audio", size=1, name="interview.wav")}, "automatic-speech-recognition"),
        ("Put this sentence into Spanish: the train leaves at noon.", {}, "translation"),
    ]
    plans: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    with LocalLLMServer.from_settings(settings, resolve_gguf(settings)) as server:
        assert server.slots == 2
        client = settings.model_copy(update={"openai_base_url": server.base_url, "llm_model": server.model,
                                             "llm_response_format": "json_object", "llm_timeout_s": 600})

        def plan(i: int) -> None:
            text, uploads, _ = requests[i]
            try:
                plans[i] = [n.task for n in plan_request(LLM(client), text, uploads, available).nodes]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=plan, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for i, (_, _, expected) in enumerate(requests):
        assert expected in plans[i], plans
