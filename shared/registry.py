"""Live model registry: each worker announces what it serves, with a heartbeat that expires."""

from __future__ import annotations

import time
from collections.abc import Mapping

import redis
from pydantic import BaseModel, Field

from shared.keys import workers_expiry_key, workers_key


class ServedModel(BaseModel):
    model_id: str
    task: str
    backend: str = "local"
    description: str = ""
    required_params: list[str] = Field(default_factory=list)  # literal args it cannot run without
    param_choices: dict[str, list[str]] = Field(default_factory=dict)  # arg -> the values it understands

    def accepts(self, params: Mapping[str, object]) -> bool:
        """Whether this model can run a task with these literal args (comma lists checked item by item)."""
        if any(not str(params.get(name) or "").strip() for name in self.required_params):
            return False
        for name, allowed in self.param_choices.items():
            if name in params:
                values = {v.strip().lower() for v in str(params[name]).split(",") if v.strip()}
                if not values <= set(allowed):
                    return False
        return True


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
    """Record the worker with an expiry: a worker that stops beating drops out after ttl_s."""
    ann.seen_at = time.time()
    pipe = client.pipeline(transaction=True)
    pipe.hset(workers_key(prefix), ann.hostname, ann.model_dump_json())
    pipe.zadd(workers_expiry_key(prefix), {ann.hostname: ann.seen_at + ttl_s})
    pipe.execute()


def withdraw(client: redis.Redis, prefix: str, hostname: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hdel(workers_key(prefix), hostname)
    pipe.zrem(workers_expiry_key(prefix), hostname)
    pipe.execute()


def live_workers(client: redis.Redis, prefix: str) -> list[WorkerAnnouncement]:
    """Workers whose heartbeat has not expired (two O(log n) reads, no keyspace scan)."""
    now = time.time()
    names = client.zrangebyscore(workers_expiry_key(prefix), now, "+inf")
    if not names:
        return []
    return [WorkerAnnouncement.model_validate_json(raw) for raw in client.hmget(workers_key(prefix), names) if raw]


def prune(client: redis.Redis, prefix: str) -> int:
    """Forget workers whose heartbeat expired long ago (an hour)."""
    stale = client.zrangebyscore(workers_expiry_key(prefix), "-inf", time.time() - 3600)
    for name in stale:
        withdraw(client, prefix, name)
    return len(stale)


def candidates(workers: list[WorkerAnnouncement]) -> dict[str, list[ServedModel]]:
    """Task type -> the distinct models live workers serve for it (first announcement wins)."""
    out: dict[str, dict[str, ServedModel]] = {}
    for w in workers:
        for m in w.models:
            out.setdefault(m.task, {}).setdefault(m.model_id, m)
    return {task: list(models.values()) for task, models in out.items()}


def model_routes(workers: list[WorkerAnnouncement]) -> dict[str, str]:
    """Model id -> the lane queue to publish its tasks to, for the models that no worker on their
    pool's own queue serves (a model only GPU workers load, `hgq worker vision --lane gpu`). A model
    that any worker on the pool's queue serves goes there, as every model did before lanes."""
    queues: dict[str, dict[str, int]] = {}
    for w in workers:
        for m in w.models:
            per = queues.setdefault(m.model_id, {})
            per[w.queue] = per.get(w.queue, 0) + 1
    routes = {}
    pools = {w.queue for w in workers if w.queue == w.pool}
    for model_id, per in queues.items():
        if not pools.intersection(per):
            routes[model_id] = max(sorted(per), key=lambda q: per[q])  # the lane with the most workers
    return routes


def pools_alive(workers: list[WorkerAnnouncement]) -> set[str]:
    return {w.pool for w in workers}
