"""The LLM queue's Celery app (`hgq worker llm`): the shared app with the plan and respond
stages, the worker's heartbeat and the operations hooks."""

from __future__ import annotations

from monitoring import celery_hooks  # noqa: F401  (first: metrics, JSON logs, SIGTERM = soft shutdown)
from planner_service import tasks  # noqa: F401  (register the plan and respond stages)
from shared import worker_heartbeat  # noqa: F401  (announce the worker; it serves no models)
from shared.celery_app import app

__all__ = ["app"]
