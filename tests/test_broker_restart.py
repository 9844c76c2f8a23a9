"""Redis (broker and state, AOF on) restarted in the middle of a load: no worker exits, every
accepted request finishes, submissions during the outage get 503 + Retry-After, /readyz
recovers by itself. Own redis-server, own workers, own API."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _free_port
from tests.helpers import diag, final_statuses, submit_for

pytestmark = pytest.mark.timeout(400)


class _Redis:
    def __init__(self, workdir: Path):
        self.port = _free_port()
        self.dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                                      "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # a clean stop: AOF flushed
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[_Redis]:
    r = _Redis(tmp_path)
    r.start()
    yield r
    r.stop()


def test_a_redis_restart_mid_load_loses_nothing(own_redis: _Redis, fake_llm, hgq_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from planner_service.api import create_api
    from planner_service.auth import ApiKeys
    from planner_service.stack import Stack
    from shared.redis_conn import text_redis
    from shared.settings import Settings
    from tests.test_api import ThreadServer, api_settings_for_tests

    plan = json.dumps({"tasks": [diag(0, [], 0.3, text="a"), diag(1, [0], 0.3, text="<GENERATED>-0")]})
    fake_llm.script("plan", *[plan] * 300)
    settings = Settings(redis_url=own_redis.url, openai_base_url=fake_llm.url, openai_api_key="k",  # type: ignore[call-arg]
                        llm_model="fake-llm", diagnostics=True, preload_models=False, lease_s=2.0,
                        home=tmp_path / "home")
    env = {**hgq_env, "REDIS_URL": own_redis.url, "HGQ_HOME": str(tmp_path / "home")}
    key, _ = ApiKeys(text_redis(own_redis.url), settings.key_prefix).create("restart")
    with Stack(settings, say=lambda m: None, log_dir=tmp_path / "logs") as stack:
        stack.env.update(env)
        stack.start_workers(concurrency=1)  # every pool: /readyz wants them all
        api = ThreadServer(create_api(settings, api_settings_for_tests())).start()
        ready_again_s: list[float] = []
        try:
            with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
                def restart() -> None:
                    time.sleep(3)
                    own_redis.stop()
                    time.sleep(3)
                    own_redis.start()
                    back = time.monotonic()
                    while time.monotonic() - back < 30:
                        if http.get("/readyz").status_code == 200:
                            ready_again_s.append(time.monotonic() - back)
                            return
                        time.sleep(0.2)

                restarter = threading.Thread(target=restart)
                restarter.start()
                accepted, refused = submit_for(http, 10)
                restarter.join()
                finals = final_statuses(http, accepted, 90)
                assert finals == {"succeeded": len(accepted)}, finals
                assert refused[503] > 0, "the outage was not seen"
                assert ready_again_s and ready_again_s[0] < 15
                assert all(proc.poll() is None for _, proc in stack.procs), "a worker exited"
                print(f"restart: {len(accepted)} accepted, all succeeded; {refused[503]} refused with 503 during the "
                      f"outage; /readyz 200 again {ready_again_s[0]:.1f} s after Redis was back")
                fresh = http.post("/v1/requests", json={"text": "and one more afterwards"})
                assert fresh.status_code == 202
        finally:
            api.stop()
