"""Worker signals: load models once per process, announce what the worker serves, withdraw."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from shared.redis_conn import text_redis
from shared.registry import WorkerAnnouncement, announce, prune, withdraw
from shared.settings import LLM_QUEUE, POOLS, get_settings
from workers.expert import get_expert
from workers.model_sources import register_model_sources
from workers.pools import import_pool, served_models, serving_experts

log = logging.getLogger(__name__)
POOL_ENV = "HGQ_WORKER_POOL"
_stop = threading.Event()
_hostname: str | None = None


def current_pool() -> str | None:
    return os.environ.get(POOL_ENV)


if current_pool() in POOLS:  # import the pool's experts before prefork forks its children
    import_pool(str(current_pool()))
    register_model_sources(str(current_pool()), get_settings())  # HGQ_MODELS_FILE, remote candidates


@worker_process_init.connect
def _preload_models(**_: object) -> None:
    pool, settings = current_pool(), get_settings()
    if not pool or pool == LLM_QUEUE or not settings.preload_models:
        return
    for cls in serving_experts(pool, settings):
        started = time.perf_counter()
        try:
            get_expert(cls.model_id).ensure_loaded()
            log.info("loaded %s in %.2fs", cls.model_id, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - a broken model must not kill the pool; its tasks fail clearly
            log.error("could not load %s: %s", cls.model_id, exc)


@worker_ready.connect
def _start_heartbeat(sender: object, **_: object) -> None:
    global _hostname
    pool = current_pool()
    if not pool:
        return
    settings = get_settings()
    hostname = str(getattr(sender, "hostname", f"{pool}@{os.uname().nodename}"))
    _hostname = hostname
    models = served_models(pool, settings) if pool != LLM_QUEUE else []
    concurrency = int(getattr(getattr(sender, "pool", None), "limit", 0) or 1)
    ann = WorkerAnnouncement(hostname=hostname, pool=pool, queue=pool, pid=os.getpid(), concurrency=concurrency,
                             models=models, started_at=time.time())
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
    # a cold (soft) shutdown -- SIGTERM with REMAP_SIGTERM=SIGQUIT -- never sends worker_shutdown
    main_pid = os.getpid()
    atexit.register(lambda: _withdraw() if os.getpid() == main_pid else None)


@worker_shutdown.connect
def _withdraw(**_: object) -> None:
    _stop.set()
    if _hostname:
        try:
            withdraw(text_redis(), get_settings().key_prefix, _hostname)
        except Exception:  # noqa: BLE001
            pass
