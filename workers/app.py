"""The pool workers' Celery app (`celery -A workers.app`, `hgq worker text|vision|audio`): the
shared app with the node tasks, the pools' lifecycle signals and the operations hooks."""

from __future__ import annotations

from monitoring import celery_hooks  # noqa: F401  (first: metrics, JSON logs, SIGTERM = soft shutdown)
from shared.celery_app import app, create_app
from workers import lifecycle, tasks  # noqa: F401  (register the node tasks and worker signals)

__all__ = ["app", "create_app"]
