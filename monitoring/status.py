"""`hgq status`: workers per pool, queue lengths, runs in flight, read straight from Redis."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.broker_queues import QueueDepths, redis_queue_length
from shared.errors import ConfigError
from shared.keys import run_keys, runs_index_key
from shared.llm_backlog import LLMBacklog
from shared.redis_conn import redacted
from shared.registry import WorkerAnnouncement, live_workers
from shared.settings import ALL_QUEUES

__all__ = ["collect_status", "format_status", "redis_queue_length", "status_report"]
FINAL = frozenset({"succeeded", "failed", "cancelled"})
UNACKED_KEY = "unacked"  # kombu: hash of messages delivered to a worker and not yet acknowledged


@dataclass
class RunRow:
    run_id: str
    status: str
    age_s: float
    left: int | None


@dataclass
class Status:
    workers: dict[str, list[WorkerAnnouncement]]
    queued: dict[str, int]
    unacked: int
    in_flight: list[RunRow] = field(default_factory=list)
    recent: Counter[str] = field(default_factory=Counter)  # final statuses among the scanned runs
    scanned: int = 0
    llm_calls: int = 0  # LLM calls sent and not yet answered
    llm_slots: int = 0


def collect_status(settings: Any, client: Any = None, scan: int = 2000, now: float | None = None) -> Status:
    """Everything `status_report` prints. `scan`: how many of the most recent runs to look at."""
    from shared.redis_conn import text_redis

    client = client or text_redis(settings.redis_url)
    now = time.time() if now is None else now
    workers = live_workers(client, settings.key_prefix)
    by_pool: dict[str, list[WorkerAnnouncement]] = {q: [] for q in ALL_QUEUES}
    for w in workers:
        by_pool.setdefault(w.queue, []).append(w)  # a lane's workers (POOL.LANE) are listed apart
    depths = QueueDepths(settings, client)
    try:
        queued = {q: depths.length(q) for q in by_pool}
    finally:
        depths.close()
    # kombu's Redis transport keeps unacknowledged messages in Redis; RabbitMQ keeps its own count
    unacked = 0 if settings.broker_is_amqp else int(client.hlen(UNACKED_KEY))

    ids = client.zrevrangebyscore(runs_index_key(settings.key_prefix), "+inf", now - settings.run_ttl_s,
                                  start=0, num=scan)
    pipe = client.pipeline(transaction=False)
    for run_id in ids:
        pipe.hmget(run_keys(settings.key_prefix, run_id).meta, "status", "created_at", "left")
    backlog = LLMBacklog.from_settings(client, settings)
    status = Status(workers=by_pool, queued=queued, unacked=unacked, scanned=len(ids),
                    llm_calls=backlog.in_flight(), llm_slots=settings.llm_slots)
    for run_id, (st, created, left) in zip(ids, pipe.execute() if ids else [], strict=True):
        if st is None:  # expired
            continue
        if st in FINAL:
            status.recent[st] += 1
            continue
        status.in_flight.append(RunRow(run_id, st, now - float(created or now), int(left) if left else None))
    status.in_flight.sort(key=lambda r: -r.age_s)
    return status


def format_status(st: Status, settings: Any, show_runs: int = 10) -> str:
    broker = f"  broker={redacted(settings.broker)}" if settings.broker_is_amqp else ""
    lines = [f"hgq status  redis={redacted(settings.redis_url)}{broker}  prefix={settings.key_prefix}", ""]
    lines.append(f"{'pool':<8}{'workers':>8}{'procs':>7}{'queued':>8}  hosts / task types")
    for pool, ws in st.workers.items():
        procs = sum(w.concurrency for w in ws)
        hosts = ", ".join(sorted(w.hostname for w in ws)) or "-"
        kinds = ", ".join(sorted({m.task for w in ws for m in w.models})) or "-"
        lines.append(f"{pool:<8}{len(ws):>8}{procs:>7}{st.queued.get(pool, 0):>8}  {hosts}")
        if pool != "llm":
            lines.append(f"{'':<31}  tasks: {kinds}")
        if not ws and st.queued.get(pool):
            lines.append(f"{'':<31}  WARNING: {st.queued[pool]} queued and no live worker")
    lines.append("")
    lines.append(f"reserved by workers (unacked): {st.unacked}")
    waiting = max(0, st.llm_calls - st.llm_slots) if st.llm_slots else None
    lines.append(f"LLM calls in flight: {st.llm_calls}" + (f" ({waiting} waiting for one of {st.llm_slots} slots)"
                                                            if waiting is not None else "")
                 + f"; stages queued for the LLM: {st.queued.get('llm', 0)}")
    by_status = Counter(r.status for r in st.in_flight)
    detail = ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())) or "none"
    lines.append(f"runs in flight: {len(st.in_flight)} ({detail})")
    for row in st.in_flight[:show_runs]:
        left = f"  tasks left={row.left}" if row.left is not None else ""
        lines.append(f"  {row.run_id:<24} {row.status:<11} {row.age_s:>8.1f}s{left}")
    if len(st.in_flight) > show_runs:
        lines.append(f"  ... and {len(st.in_flight) - show_runs} more")
    finished = ", ".join(f"{k} {v}" for k, v in sorted(st.recent.items())) or "none"
    lines.append(f"finished (last {st.scanned} runs): {finished}")
    return "\n".join(lines)


def status_report(settings: Any, client: Any = None, show_runs: int = 10) -> str:
    """The text of `hgq status`. Raises ConfigError when Redis cannot be reached."""
    import redis

    try:
        st = collect_status(settings, client)
    except redis.RedisError as exc:
        raise ConfigError(f"Redis at {redacted(settings.redis_url)} is not reachable: {exc}") from exc
    return format_status(st, settings, show_runs)

