"""DAG scheduling benchmark: makespan vs critical path, per-node overhead, and throughput.

Runs real Celery workers on a private redis-server, with diagnostic nodes of known duration
and the scripted LLM (so LLM time does not blur the scheduling figures).

    .venv/bin/python bench/dag_bench.py [--node-seconds 0.2] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_llm import FakeLLM  # noqa: E402  (the scripted OpenAI-compatible server)

POOLS = ("text", "vision", "audio")


def shapes(rng: random.Random) -> list[tuple[str, dict[int, list[int]]]]:
    """TaskBench-like DAG shapes (node -> deps): chains, fan-out/fan-in, N, random DAGs of 2..8."""
    out: list[tuple[str, dict[int, list[int]]]] = []
    for n in (2, 3, 4, 5):
        out.append((f"chain-{n}", {i: ([i - 1] if i else []) for i in range(n)}))
    for k in (2, 3, 4):
        out.append((f"fan-out-{k}", {0: [], **{i: [0] for i in range(1, k + 1)}}))
        out.append((f"fan-in-{k}", {**{i: [] for i in range(k)}, k: list(range(k))}))
        out.append((f"diamond-{k}", {0: [], **{i: [0] for i in range(1, k + 1)}, k + 1: list(range(1, k + 1))}))
    out.append(("N", {0: [], 1: [], 2: [1], 3: [0, 1]}))
    while len(out) < 24:
        n = rng.randint(3, 8)
        deps = {i: sorted(rng.sample(range(i), k=min(i, rng.randint(0 if i else 0, 2)))) if i else [] for i in range(n)}
        out.append((f"random-{n}", deps))
    return out


def critical_path(deps: dict[int, list[int]], seconds: float) -> tuple[float, int]:
    longest: dict[int, int] = {}
    for node in sorted(deps):
        longest[node] = 1 + max((longest[d] for d in deps[node]), default=0)
    depth = max(longest.values())
    return depth * seconds, depth


def plan_for(deps: dict[int, list[int]], seconds: float) -> list[dict[str, object]]:
    return [{"id": n, "task": f"diag-{POOLS[n % 3]}", "dep": d or [-1],
             "args": {"seconds": seconds, **{(f"text{i + 1}" if i else "text"): f"<GENERATED>-{x}"
                                              for i, x in enumerate(d[:3])}}}
            for n, d in deps.items()]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node-seconds", type=float, default=0.2)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--throughput-processes", type=int, default=4)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hgq-bench-"))
    port = _free_port()
    redis_proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL)
    llm = FakeLLM().start()
    os.environ.update({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "OPENAI_BASE_URL": llm.url,
                       "OPENAI_API_KEY": "bench", "HGQ_DIAGNOSTICS": "1", "HGQ_PRELOAD_MODELS": "0",
                       "HGQ_HOME": str(home)})
    from planner_service.client import HgqClient
    from planner_service.stack import Stack, wait_for
    from shared.plan import parse_plan_json
    from shared.redis_conn import reachable
    from shared.run_models import RequestCreate
    from shared.settings import get_settings
    from workers.app import create_app

    wait_for(lambda: reachable(os.environ["REDIS_URL"]), 10, "redis")
    settings = get_settings()
    client = HgqClient(settings, create_app(settings))
    rng = random.Random(7)
    try:
        with Stack(settings, say=lambda m: None, log_dir=home / "logs") as stack:
            stack.start_workers(concurrency=6)
            _latency_bench(client, rng, args.node_seconds, parse_plan_json, RequestCreate)
            _planned_bench(client, llm, rng, args.node_seconds, RequestCreate)
        with Stack(settings, say=lambda m: None, log_dir=home / "logs2") as stack:
            stack.start_workers(("text", "llm"), concurrency=args.throughput_processes)
            _throughput_bench(client, args.requests, args.throughput_processes, parse_plan_json, RequestCreate)
    finally:
        llm.stop()
        redis_proc.terminate()
    return 0


def _wait(client, run_id: str):  # type: ignore[no-untyped-def]
    for _ in client.follow(run_id):  # blocks on the run's event stream until `done`
        pass
    return client.view(run_id)


def _latency_bench(client, rng, seconds: float, parse_plan_json, RequestCreate) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):  # warm-up: imports, connections
        _wait(client, client.submit(RequestCreate(text="warm", plan=parse_plan_json(plan_for({0: [], 1: [0]}, 0)))))
    print(f"\nDAG makespan vs critical path ({seconds * 1000:.0f} ms nodes, 3 pools x 6 processes)")
    print(f"{'dag':<12}{'nodes':>6}{'critical':>10}{'makespan':>10}{'ratio':>7}{'overhead/node':>15}{'end-to-end':>12}")
    ratios, overheads = [], []
    for name, deps in shapes(rng):
        run_id = client.submit(RequestCreate(text=name, plan=parse_plan_json(plan_for(deps, seconds))))
        view = _wait(client, run_id)
        assert view.status == "succeeded", view.error
        starts = [t.started_at for t in view.tasks.values()]
        ends = [t.finished_at for t in view.tasks.values()]
        makespan = max(ends) - min(starts)  # type: ignore[type-var,operator]
        cp, depth = critical_path(deps, seconds)
        ratio = makespan / cp
        overhead_ms = (makespan - cp) / depth * 1000
        ratios.append(ratio)
        overheads.append(overhead_ms)
        e2e = (view.finished_at or 0) - (view.created_at or 0)
        print(f"{name:<12}{len(deps):>6}{cp:>9.2f}s{makespan:>9.3f}s{ratio:>7.3f}{overhead_ms:>12.1f} ms{e2e:>11.3f}s")
    print(f"{'median':<12}{'':>6}{'':>10}{'':>10}{statistics.median(ratios):>7.3f}"
          f"{statistics.median(overheads):>12.1f} ms")


def _planned_bench(client, llm: FakeLLM, rng, seconds: float, RequestCreate) -> None:  # type: ignore[no-untyped-def]
    """The whole request with an LLM of real latency (0.4 s + 0.01 s per output token, for the plan
    and the answer): end-to-end against the serial lower bound plan + selection + critical path +
    answer. Only a plan that streams (its first tasks start before its last token) goes under 1."""
    import json

    llm.latency["plan"] = llm.latency["respond"] = (0.4, 0.01)
    print(f"\nWhole requests with a latency LLM (0.4 s + 0.01 s/token), {seconds * 1000:.0f} ms nodes")
    print(f"{'dag':<12}{'nodes':>6}{'plan':>8}{'answer':>8}{'lower':>8}{'end-to-end':>12}{'ratio':>7}")
    ratios: dict[str, list[float]] = {}
    try:
        llm.script("plan", json.dumps({"tasks": plan_for({0: []}, 0.0)}))  # warm-up: the planner's first call
        _wait(client, client.submit(RequestCreate(text="warm up the planner")))
        for name, deps in shapes(rng):
            kind = name.split("-")[0] + ("-" + name.split("-")[1] if name.startswith("fan") else "")
            if kind not in ("chain", "fan-out", "diamond"):
                continue
            llm.script("plan", json.dumps({"tasks": plan_for(deps, seconds)}))
            view = _wait(client, client.submit(RequestCreate(text=f"please run the {name} diagnostic")))
            assert view.status == "succeeded", view.error
            plan_s = 0.4 + 0.01 * view.usage["plan"].completion_tokens
            answer_s = 0.4 + 0.01 * view.usage["respond"].completion_tokens
            lower = plan_s + critical_path(deps, seconds)[0] + answer_s  # no selection call: one candidate each
            e2e = (view.finished_at or 0) - (view.created_at or 0)
            ratios.setdefault(kind, []).append(e2e / lower)
            print(f"{name:<12}{len(deps):>6}{plan_s:>7.2f}s{answer_s:>7.2f}s{lower:>7.2f}s{e2e:>11.3f}s{e2e / lower:>7.3f}")
    finally:
        llm.latency.clear()
    for kind, values in ratios.items():
        print(f"median end-to-end / lower bound, {kind}: {statistics.median(values):.3f}")
    print(f"median over all: {statistics.median([r for v in ratios.values() for r in v]):.3f}")


def _throughput_bench(client, n: int, procs: int, parse_plan_json, RequestCreate) -> None:  # type: ignore[no-untyped-def]
    plan = parse_plan_json(plan_for({0: [], 1: [0], 2: [0]}, 0.0))
    plan = [t.model_copy(update={"task": "diag-text"}) for t in plan]
    _wait(client, client.submit(RequestCreate(text="warm", plan=plan)))
    started = time.time()
    ids = [client.submit(RequestCreate(text=f"r{i}", plan=plan)) for i in range(n)]
    submitted = time.time()
    views = [_wait(client, rid) for rid in ids]
    done = max(v.finished_at or 0 for v in views)
    lat = [(v.finished_at or 0) - (v.created_at or 0) for v in views]
    ok = sum(v.status == "succeeded" for v in views)
    print(f"\nThroughput: {n} three-node requests submitted at once, {procs} text worker processes + llm worker")
    print(f"  submitted in {submitted - started:.2f}s; all final after {done - started:.2f}s; "
          f"{ok}/{n} succeeded (none lost: {ok == n})")
    print(f"  throughput {n / (done - started):.1f} requests/s ({3 * n / (done - started):.0f} nodes/s); "
          f"latency p50 {pct(lat, 0.5):.2f}s p95 {pct(lat, 0.95):.2f}s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
