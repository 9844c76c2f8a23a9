"""The Celery application shared by every pool and every publisher. Routing lives in `task_routes` only.

This module only configures the app. Task bodies register themselves on `app` from their own
side (`workers.tasks` for the pools' node tasks, `planner_service.tasks` for the plan and
respond stages); a publisher needs none of them, since tasks are sent by name.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_init

from shared.broker_queues import amqp_queues, declare_amqp_queues
from shared.settings import LLM_QUEUE, POOLS, Settings, get_settings
from shared.task_names import node_task_name


def celery_config(settings: Settings) -> dict[str, object]:
    vt = settings.visibility_timeout_s
    routes: dict[str, dict[str, str]] = {node_task_name(p): {"queue": p} for p in POOLS}
    routes["hgq.llm.*"] = {"queue": LLM_QUEUE}
    config: dict[str, object] = {
        "broker_url": settings.broker,
        "result_backend": settings.redis_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_routes": routes,
        "task_default_queue": "text",
        "task_create_missing_queues": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_hard_time_limit_s,
        "result_extended": True,
        "task_ignore_result": True,  # run state, outputs and events live in hgq's own keys (shared/run_store.py)
        "result_expires": settings.run_ttl_s,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 10,
        "broker_transport_options": {"visibility_timeout": vt},
        "result_backend_transport_options": {"visibility_timeout": vt},
        "visibility_timeout": vt,
        "broker_connection_retry_on_startup": True,
        "worker_soft_shutdown_timeout": min(settings.worker_soft_shutdown_s, settings.task_soft_time_limit_s),
        "worker_enable_soft_shutdown_on_idle": False,  # idle workers stop at once; reserved messages are restored
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_disable_rate_limits": True,
        "broker_pool_limit": 20,
    }
    if settings.broker_is_amqp:
        config["task_queues"] = amqp_queues()  # quorum queues; Celery then drops global QoS by itself
        config["broker_transport_options"] = {"confirm_publish": True}  # accepted means on the broker
    return config


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery_app = Celery("hgq")
    celery_app.conf.update(celery_config(settings))
    return celery_app


@worker_init.connect(dispatch_uid="hgq-declare-queues")
def _declare_queues(sender: Any = None, **_: Any) -> None:
    if sender is None or not get_settings().broker_is_amqp:
        return
    try:
        declare_amqp_queues(sender.app)
    except Exception as exc:  # noqa: BLE001 - the consumer declares its own queues when the broker is back
        logging.getLogger(__name__).warning("could not declare the broker's queues yet: %s", exc)


app = create_app()  # the process's app: workers register their tasks on it, publishers send by name
