"""Load benchmark of the HTTP API: N concurrent users x M requests each, through real HTTP.

Starts its own private redis-server, the scripted LLM, workers for every pool (diagnostic experts
of known duration) and API replicas (subprocesses), then each user, in a closed loop, submits a
request (POST /v1/requests), follows its event stream (SSE) until `done`, and submits the next.
Prints throughput, p50/p95 latencies, and checks that every accepted request reached a final state.

    .venv/bin/python bench/load_api.py [--users 50] [--requests 4] [--replicas 1] [--node-seconds 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.fake_llm import FakeLLM  # noqa: E402  (the scripted OpenAI-compatible server)

FINAL = {"succeeded", "failed", "cancelled"}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def plan(seconds: float, i: int) -> list[dict[str, Any]]:
    """A three-node DAG across pools: text -> (vision, audio)."""
    return [
        {"id": 0, "task": "diag-text", "dep": [-1], "args": {"seconds": seconds, "text": f"r{i}"}},
        {"id": 1, "task": "diag-vision", "dep": [0], "args": {"seconds": seconds, "text": "<GENERATED>-0"}},
        {"id": 2, "task": "diag-audio", "dep": [0], "args": {"seconds": seconds, "text": "<GENERATED>-0"}},
    ]


async def follow(http: httpx.AsyncClient, rid: str, timeout_s: float) -> str | None:
    """Read the run's SSE stream until `done`; return its status (None if the stream broke)."""
    last = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with http.stream("GET", f"/v1/requests/{rid}/events",
                                   headers={"Last-Event-ID": last} if last else {}) as resp:
                if resp.status_code != 200:
                    await asyncio.sleep(0.2)
                    continue
                event, data = "", ""
                async for line in resp.aiter_lines():
                    if line.startswith("id: "):
                        last = line[4:]
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "" and event == "done":
                        return str(json.loads(data).get("status"))
        except httpx.HTTPError:
            await asyncio.sleep(0.2)  # reconnect with Last-Event-ID
    return None


async def user(base: str, key: str, n: int, seconds: float, stats: dict[str, Any], timeout_s: float,
               ready: tuple[asyncio.Barrier, ...] = ()) -> None:
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    # plain http: no TLS context per client (building one costs ~25 ms of this process's CPU, and 50 of
    # them built while other users' first requests are in flight were counted as API latency)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                 limits=limits, verify=False) as http:
        for barrier in ready:  # every user's client exists before the first request is sent
            await barrier.wait()
        for i in range(n):
            t0 = time.monotonic()
            r: httpx.Response | None = None
            while r is None or r.status_code == 429:
                if r is not None:
                    stats["throttled"] += 1
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                try:
                    r = await http.post("/v1/requests", json={"text": f"load {i}", "plan": plan(seconds, i)})
                except httpx.HTTPError as exc:
                    stats["errors"].append(repr(exc))
                    break
            if r is None or r.status_code != 202:
                if r is not None:
                    stats["errors"].append(f"{r.status_code} {r.text[:200]}")
                continue
            t_accepted = time.monotonic()
            rid = r.json()["request_id"]
            stats["accepted"].append((rid, key))
            stats["accept_s"].append(t_accepted - t0)
            stats.setdefault("accept_later_s" if i else "accept_first_s", []).append(t_accepted - t0)
            status = await follow(http, rid, timeout_s)
            stats["latency_s"].append(time.monotonic() - t0)
            stats["status"][status] = stats["status"].get(status, 0) + 1


async def verify(base: str, accepted: list[tuple[str, str]]) -> dict[str, int]:
    """Every accepted request, read back through the API: its final state."""
    out: dict[str, int] = {}
    sem = asyncio.Semaphore(20)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        async def one(rid: str, key: str) -> None:
            async with sem:
                r = await http.get(f"/v1/requests/{rid}", headers={"Authorization": f"Bearer {key}"})
                status = r.json()["status"] if r.status_code == 200 else f"http-{r.status_code}"
                out[status] = out.get(status, 0) + 1

        await asyncio.gather(*(one(rid, key) for rid, key in accepted))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--requests", type=int, default=4, help="requests per user")
    ap.add_argument("--replicas", type=int, default=1, help="API replicas (users spread over them)")
    ap.add_argument("--node-seconds", type=float, default=0.05)
    ap.add_argument("--worker-concurrency", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=300, help="seconds one request may take")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hgq-load-"))
    port = _free_port()
    redis_proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                                   "--appendonly", "no", "--maxclients", "10000"], stdout=subprocess.DEVNULL)
    llm = FakeLLM().start()
    os.environ.update({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "OPENAI_BASE_URL": llm.url,
                       "OPENAI_API_KEY": "bench", "HGQ_LLM_MODEL": "fake-llm", "HGQ_DIAGNOSTICS": "1",
                       "HGQ_PRELOAD_MODELS": "0", "HGQ_HOME": str(home),
                       "HGQ_API_RATE_PER_MINUTE": "100000", "HGQ_API_MAX_CONCURRENT": "1000"})
    from planner_service.auth import ApiKeys
    from planner_service.cli_api import api_command_line
    from planner_service.stack import Stack, _port_open, wait_for
    from shared.redis_conn import reachable, text_redis
    from shared.settings import get_settings

    wait_for(lambda: reachable(os.environ["REDIS_URL"]), 10, "redis")
    settings = get_settings()
    ports = [_free_port() for _ in range(args.replicas)]
    apis: list[subprocess.Popen] = []
    try:
        with Stack(settings, say=lambda m: None, log_dir=home / "logs") as stack:
            stack.start_workers(concurrency=args.worker_concurrency)
            for i, p in enumerate(ports):
                log = open(home / "logs" / f"api{i}.log", "wb")  # noqa: SIM115
                apis.append(subprocess.Popen(api_command_line("127.0.0.1", p), stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True))
            for p, proc in zip(ports, apis, strict=True):
                wait_for(lambda p=p: _port_open("127.0.0.1", p), 30, f"api on {p}", proc)
            keys = ApiKeys(text_redis(settings.redis_url), settings.key_prefix)
            users = [keys.create(f"load-{u}")[0] for u in range(args.users)]
            bases = [f"http://127.0.0.1:{p}" for p in ports]
            # warm-up: one request per replica
            warm: dict[str, Any] = {"accepted": [], "accept_s": [], "latency_s": [], "status": {}, "errors": [],
                                    "throttled": 0}

            async def warm_up() -> None:
                await asyncio.gather(*(user(b, users[0], 1, 0, warm, 60) for b in bases))

            asyncio.run(warm_up())
            stats: dict[str, Any] = {"accepted": [], "accept_s": [], "latency_s": [], "status": {}, "errors": [],
                                     "throttled": 0}
            started = time.monotonic()

            async def run_all() -> None:
                barrier = asyncio.Barrier(args.users)
                await asyncio.gather(*(user(bases[u % len(bases)], users[u], args.requests, args.node_seconds,
                                            stats, args.timeout, (barrier,)) for u in range(args.users)))

            asyncio.run(run_all())
            elapsed = time.monotonic() - started
            final = asyncio.run(verify(bases[-1], stats["accepted"]))
            total = args.users * args.requests
            accepted = len(stats["accepted"])
            finished = sum(v for k, v in final.items() if k in FINAL)
            print(f"\nAPI load: {args.users} concurrent users x {args.requests} requests "
                  f"({total} requests of 3 diagnostic nodes, {args.node_seconds * 1000:.0f} ms each), "
                  f"{args.replicas} API replica(s), workers {args.worker_concurrency} per pool")
            print(f"  accepted {accepted}/{total}; throttled (429, retried) {stats['throttled']}; "
                  f"errors {len(stats['errors'])}")
            print(f"  wall {elapsed:.2f}s; throughput {accepted / elapsed:.1f} requests/s "
                  f"({3 * accepted / elapsed:.0f} nodes/s)")
            print(f"  accept latency (POST -> 202) p50 {pct(stats['accept_s'], .5) * 1000:.0f} ms "
                  f"p95 {pct(stats['accept_s'], .95) * 1000:.0f} ms; each user's first request (all at once, "
                  f"new connections) p50 {pct(stats.get('accept_first_s', []), .5) * 1000:.0f} ms "
                  f"p95 {pct(stats.get('accept_first_s', []), .95) * 1000:.0f} ms; later requests p50 "
                  f"{pct(stats.get('accept_later_s', []), .5) * 1000:.0f} ms "
                  f"p95 {pct(stats.get('accept_later_s', []), .95) * 1000:.0f} ms")
            print(f"  end-to-end latency (POST -> done event) p50 {pct(stats['latency_s'], .5):.2f}s "
                  f"p95 {pct(stats['latency_s'], .95):.2f}s")
            print(f"  final states read back: {final}; streams ended with: {stats['status']}")
            ok = finished == accepted and not stats["errors"]
            print(f"  every accepted request reached a final state (none lost): {ok}")
            for err in stats["errors"][:5]:
                print(f"  error: {err}")
            return 0 if ok else 1
    finally:
        for proc in apis:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
        llm.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
