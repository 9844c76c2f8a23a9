"""Fixtures: a private redis-server, the scripted LLM, and real worker processes per pool."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_llm import FakeLLM

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (make setup installs it)")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            if redis.Redis.from_url(url).ping():
                break
        except redis.RedisError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def hgq_env(redis_url: str, fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("hgq-home")
    env = {
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": fake_llm.url,
        "OPENAI_API_KEY": "test-key",
        "HGQ_LLM_MODEL": "fake-llm",
        "HGQ_DIAGNOSTICS": "1",
        "HGQ_PRELOAD_MODELS": "0",
        "HGQ_LEASE_S": "2",
        "HGQ_TASK_RETRY_BACKOFF_S": "0.1",
        "HGQ_WORKER_CONCURRENCY": "3",
        "HGQ_HOME": str(home),
        "HGQ_OUTPUT_DIR": str(home / "out"),
        "HF_TOKEN": "",  # a developer's token must not add remote candidates to the tests' workers
    }
    os.environ.update(env)
    from shared.settings import get_settings

    get_settings.cache_clear()
    return env


@pytest.fixture(scope="session")
def settings(hgq_env: dict[str, str]):  # type: ignore[no-untyped-def]
    from shared.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def stack(settings, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from planner_service.stack import Stack

    logs = tmp_path_factory.mktemp("logs")
    st = Stack(settings, say=lambda m: None, log_dir=logs)
    try:
        st.start_workers()
        yield st
    finally:
        st.stop()


@pytest.fixture(scope="session")
def client(settings, stack):  # type: ignore[no-untyped-def]
    from planner_service.client import HgqClient
    from workers.app import create_app

    return HgqClient(settings, create_app(settings))


@pytest.fixture(autouse=True)
def _reset_llm(request: pytest.FixtureRequest) -> None:
    if "fake_llm" in request.fixturenames:
        request.getfixturevalue("fake_llm").reset()


@pytest.fixture(scope="session")
def fake_hf() -> Iterator[object]:
    """A fake Hugging Face inference endpoint (real HTTP, scriptable per path)."""
    from tests.fake_hf_endpoint import FakeHFEndpoint

    server = FakeHFEndpoint().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def models_stack(hgq_env: dict[str, str], fake_hf, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """llm + text workers on their own Redis DB, with HGQ_MODELS_FILE (tests/models_stack.py)."""
    from tests.models_stack import models_stack as start

    with start(hgq_env, fake_hf, tmp_path_factory.mktemp("models-stack")) as ms:
        yield ms


@pytest.fixture(autouse=True)
def _reset_fake_hf(request: pytest.FixtureRequest) -> None:
    if "fake_hf" in request.fixturenames or "models_stack" in request.fixturenames:
        request.getfixturevalue("fake_hf").reset()
