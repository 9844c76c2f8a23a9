"""Live model registry: each worker announces what it serves, with a heartbeat that expires."""

from __future__ import annotations

import time

import redis
from pydantic import BaseModel, Field

from shared.keys import worker_key, worker_pattern


class ServedModel(BaseModel):
    model_id: str
    task: str
    backend: str = "local"
    description: str = ""


class WorkerAnnouncement(BaseModel):
    hostname: str
    pool: str
    queue: str
    pid: int
    concurrency: int = 1
    models: list[ServedModel] = Field(default_factory=list)
    started_at: float
    seen_at: float = Field(default_factory=time.time)


def announce(client: redis.Redis, prefix: str, ann: WorkerAnnouncement, ttl_s: float) -> None:
    ann.seen_at = time.time()
    client.set(worker_key(prefix, ann.hostname), ann.model_dump_json(), px=int(ttl_s * 1000))


def withdraw(client: redis.Redis, prefix: str, hostname: str) -> None:
    client.delete(worker_key(prefix, hostname))


def live_workers(client: redis.Redis, prefix: str) -> list[WorkerAnnouncement]:
    keys = list(client.scan_iter(match=worker_pattern(prefix), count=500))
    if not keys:
        return []
    return [WorkerAnnouncement.model_validate_json(raw) for raw in client.mget(keys) if raw]


def candidates(workers: list[WorkerAnnouncement]) -> dict[str, list[ServedModel]]:
    """Task type -> the distinct models live workers serve for it (first announcement wins)."""
    out: dict[str, dict[str, ServedModel]] = {}
    for w in workers:
        for m in w.models:
            out.setdefault(m.task, {}).setdefault(m.model_id, m)
    return {task: list(models.values()) for task, models in out.items()}


def pools_alive(workers: list[WorkerAnnouncement]) -> set[str]:
    return {w.pool for w in workers}
