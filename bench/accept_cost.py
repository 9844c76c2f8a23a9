"""CPU cost of accepting one request: Service.submit (key lookup, limits, the LLM backlog check, the
run's keys, the Celery publish), in one thread against a private redis-server, with a profile.

    .venv/bin/python bench/accept_cost.py [--sent-events off]
"""

from __future__ import annotations

import cProfile
import os
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    port, home = free_port(), tempfile.mkdtemp(prefix="hgq-accept-")
    redis_server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                                     "--appendonly", "no", "--dir", home], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    os.environ.update({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "HGQ_DIAGNOSTICS": "1", "HGQ_HOME": home,
                       "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "x",
                       "HGQ_LLM_MAX_BACKLOG": "100000"})
    from planner_service.api.service import Service
    from planner_service.auth import ApiKeys
    from shared.plan import parse_plan_json
    from shared.redis_conn import text_redis
    from shared.settings import get_settings
    from tests.test_api import api_settings_for_tests

    try:
        settings = get_settings()
        key, _ = ApiKeys(text_redis(settings.redis_url), settings.key_prefix).create("bench")
        svc = Service(settings, api_settings_for_tests(api_rate_per_minute=10**6, api_max_concurrent=10**6))
        if sys.argv[-2:] == ["--sent-events", "off"]:
            svc.client.app.conf.task_send_sent_event = False
        plan = parse_plan_json([{"id": 0, "task": "diag-text", "args": {"seconds": 0.05, "text": "r"}},
                                {"id": 1, "task": "diag-vision", "args": {"text": "<GENERATED>-0"}}])
        for i in range(5):  # connections, imports
            svc.submit(svc.user_for(f"Bearer {key}"), f"warm {i}", plan, None, [], [])
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for i in range(200):
            svc.submit(svc.user_for(f"Bearer {key}"), f"request {i}", plan, None, [], [])
        profile.disable()
        print(f"accept cost: {(time.perf_counter() - started) * 1000 / 200:.2f} ms per request "
              "(200 requests, one thread, profiler on)")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(r"(planner_service|shared|kombu|celery)", 20)
    finally:
        redis_server.terminate()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
