"""LLM serving under load: K users at once, each sending plan-sized calls to the embedded LLM.

Starts the embedded local LLM the way `hgq up` does (llama.cpp's llama-server with
HGQ_LOCAL_LLM_PARALLEL slots when `make setup` built it, else llama-cpp-python's server), then
for each K: K threads send the real planner prompt (system prompt, retrieved demonstrations,
request) for distinct requests, through hgq's own LLM client (streaming, JSON-constrained),
`--calls` calls per thread. Prints aggregate throughput (calls/min and generated tokens/s),
p50/p95 per call, and failures.

    .venv/bin/python bench/llm_load.py [--k 1,2,4] [--calls 2] [--server llama-server|python]
                                       [--parallel 4] [--max-tokens 200] [--json]

The requests are varied TaskBench-style wordings written for this bench (not planner demos).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REQUESTS = [
    "Could you tell me what's written on the receipt in receipt.png and then read it out loud?",
    "I recorded a voicemail (voicemail.wav); write it down for me and give me the gist in two lines.",
    "Take holiday.jpg, turn it black and white, and tell me what objects are in it.",
    "Please render this paragraph into Spanish: The museum opens at nine and closes at five.",
    "Is the tone of this review positive or negative? 'The battery died after a day, very annoying.'",
    "Find the people and the names of places in: Maria flew from Lisbon to Oslo with Tom last May.",
    "Make an image of a lighthouse on a cliff at dawn and describe what it shows.",
    "What language is 'Ich habe heute keine Zeit' in, and what does it mean in English?",
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_level(settings: Any, k: int, calls: int, max_tokens: int) -> dict[str, Any]:
    from planner_service.planning import PLAN_SCHEMA, plan_messages
    from shared.catalog import TASK_TYPES
    from shared.llm_client import LLM

    available = {t for t in TASK_TYPES if not t.startswith("diag-")}
    latencies: list[float] = []
    tokens: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def user(idx: int) -> None:
        def usage(_stage: str, _prompt: int, completion: int, _seconds: float) -> None:
            with lock:
                tokens.append(completion)

        llm = LLM(settings.model_copy(update={"llm_max_tokens": max_tokens}), on_usage=usage)
        for c in range(calls):
            text = REQUESTS[(idx * calls + c) % len(REQUESTS)]
            t0 = time.perf_counter()
            try:
                llm.chat_json("plan", plan_messages(text, {}, available), PLAN_SCHEMA)
                with lock:
                    latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - a failure is a figure here
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}"[:200])

    started = time.perf_counter()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    done = len(latencies)
    return {"k": k, "calls": done, "failures": len(failures), "wall_s": round(wall, 1),
            "calls_per_min": round(60 * done / wall, 2), "gen_tokens_per_s": round(sum(tokens) / wall, 2),
            "p50_s": round(statistics.median(latencies), 1) if latencies else None,
            "p95_s": round(_percentile(latencies, 0.95), 1) if latencies else None,
            "errors": failures[:3]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--k", default="1,2,4", help="concurrent users, comma-separated")
    p.add_argument("--calls", type=int, default=2, help="calls per user at each level")
    p.add_argument("--server", choices=("auto", "llama-server", "python"), default="auto")
    p.add_argument("--parallel", type=int, default=None, help="llama-server slots (HGQ_LOCAL_LLM_PARALLEL)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    from shared.llm_model_file import resolve_gguf
    from shared.llm_server import LocalLLMServer
    from shared.settings import Settings

    settings = Settings()
    update: dict[str, Any] = {"local_llm_server": args.server}
    if args.parallel:
        update["local_llm_parallel"] = args.parallel
    settings = settings.model_copy(update=update)
    levels = [int(x) for x in args.k.split(",") if x.strip()]
    t0 = time.perf_counter()
    with LocalLLMServer.from_settings(settings, resolve_gguf(settings)) as server:
        load_s = time.perf_counter() - t0
        client_settings = settings.model_copy(update={
            "openai_base_url": server.base_url, "llm_model": server.model, "llm_response_format": "json_object",
            "llm_timeout_s": 900.0})
        kind = "llama-server" if server.binary else "llama_cpp.server"
        # one warm-up call: the shared prompt prefix enters the server's cache, as after any first plan
        run_level(client_settings, 1, 1, args.max_tokens)
        rows = [run_level(client_settings, k, args.calls, args.max_tokens) for k in levels]
    base = rows[0]["calls_per_min"] if rows and rows[0]["calls_per_min"] else None
    for row in rows:
        row["speedup_vs_first"] = round(row["calls_per_min"] / base, 2) if base else None
    report = {"server": kind, "slots": server.slots, "threads": server.n_threads or "all cores",
              "load_s": round(load_s, 1), "levels": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"server: {kind}, slots {server.slots}, started in {load_s:.1f} s")
    print(f"{'K':>3} {'calls':>6} {'fail':>5} {'wall s':>7} {'calls/min':>10} {'gen tok/s':>10} "
          f"{'p50 s':>6} {'p95 s':>6} {'x K=1':>6}")
    for r in rows:
        print(f"{r['k']:>3} {r['calls']:>6} {r['failures']:>5} {r['wall_s']:>7} {r['calls_per_min']:>10} "
              f"{r['gen_tokens_per_s']:>10} {r['p50_s']!s:>6} {r['p95_s']!s:>6} {r['speedup_vs_first']!s:>6}")
        for e in r["errors"]:
            print(f"      error: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
