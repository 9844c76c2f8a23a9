"""Pool worker signals: load models once per process and announce what the worker serves."""

from __future__ import annotations

import logging
import time

from celery.signals import worker_process_init

from shared.settings import POOLS, get_settings
from shared.worker_heartbeat import announce_models_with, current_pool
from workers.expert import get_expert
from workers.model_sources import register_model_sources
from workers.pools import import_pool, served_models, serving_experts

log = logging.getLogger(__name__)


if current_pool() in POOLS:  # import the pool's experts before prefork forks its children
    import_pool(str(current_pool()))
    register_model_sources(str(current_pool()), get_settings())  # HGQ_MODELS_FILE, remote candidates
announce_models_with(lambda pool: served_models(pool, get_settings()) if pool in POOLS else [])


@worker_process_init.connect
def _preload_models(**_: object) -> None:
    pool, settings = current_pool(), get_settings()
    if pool not in POOLS or not settings.preload_models:
        return
    for cls in serving_experts(pool, settings):
        started = time.perf_counter()
        try:
            get_expert(cls.model_id).ensure_loaded()
            log.info("loaded %s in %.2fs", cls.model_id, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - a broken model must not kill the pool; its tasks fail clearly
            log.error("could not load %s: %s", cls.model_id, exc)
