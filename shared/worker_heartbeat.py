"""A worker's presence in the registry: announce it when it is ready, beat while it lives,
withdraw it when it stops. Both worker kinds use it: the pools' (`workers.lifecycle`, which
announces the models it serves) and the LLM queue's (`planner_service.tasks`, no models)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

from celery.signals import worker_ready, worker_shutdown

from shared.redis_conn import text_redis
from shared.registry import ServedModel, WorkerAnnouncement, announce, prune, withdraw
from shared.settings import get_settings

log = logging.getLogger(__name__)
POOL_ENV = "HGQ_WORKER_POOL"
QUEUE_ENV = "HGQ_WORKER_QUEUE"  # set by `hgq worker POOL --lane L` (default: the pool's queue)
_stop = threading.Event()
_hostname: str | None = None


def _no_models(_pool: str) -> list[ServedModel]:
    return []


_models_of: Callable[[str], list[ServedModel]] = _no_models


def current_pool() -> str | None:
    return os.environ.get(POOL_ENV)


def current_queue() -> str | None:
    """The queue this worker consumes: its pool's, or its lane's (`hgq worker POOL --lane L`)."""
    return os.environ.get(QUEUE_ENV) or current_pool()


def announce_models_with(models_of: Callable[[str], list[ServedModel]]) -> None:
    """What the worker announces it serves (called once by the side that runs the tasks)."""
    global _models_of
    _models_of = models_of


@worker_ready.connect(dispatch_uid="hgq-heartbeat")
def _start_heartbeat(sender: object, **_: object) -> None:
    global _hostname
    pool = current_pool()
    if not pool:
        return
    settings = get_settings()
    hostname = str(getattr(sender, "hostname", f"{pool}@{os.uname().nodename}"))
    _hostname = hostname
    concurrency = int(getattr(getattr(sender, "pool", None), "limit", 0) or 1)
    ann = WorkerAnnouncement(hostname=hostname, pool=pool, queue=current_queue() or pool, pid=os.getpid(), concurrency=concurrency,
                             models=_models_of(pool), started_at=time.time())
    client = text_redis()

    def beat() -> None:
        while not _stop.is_set():
            try:
                announce(client, settings.key_prefix, ann, ttl_s=settings.worker_heartbeat_s * 3)
            except Exception as exc:  # noqa: BLE001 - Redis may blip; keep beating
                log.warning("heartbeat failed: %s", exc)
            _stop.wait(settings.worker_heartbeat_s)

    announce(client, settings.key_prefix, ann, ttl_s=settings.worker_heartbeat_s * 3)
    prune(client, settings.key_prefix)
    threading.Thread(target=beat, name="hgq-heartbeat", daemon=True).start()
    from shared.celery_app import app
    from shared.node_reaper import start_reaper

    start_reaper(getattr(sender, "app", None) or app, client, settings.key_prefix, settings.run_ttl_s,
                 settings.lease_s, _stop)
    # a cold (soft) shutdown -- SIGTERM with REMAP_SIGTERM=SIGQUIT -- never sends worker_shutdown
    main_pid = os.getpid()
    atexit.register(lambda: _withdraw() if os.getpid() == main_pid else None)


@worker_shutdown.connect(dispatch_uid="hgq-withdraw")
def _withdraw(**_: object) -> None:
    _stop.set()
    if _hostname:
        with contextlib.suppress(Exception):  # Redis may be gone already: the entry then expires
            withdraw(text_redis(), get_settings().key_prefix, _hostname)
