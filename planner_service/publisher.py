"""The Celery app of a process that only publishes (API, CLI): the shared app, plus the hook
that stamps each message with its publish time (the start of its queue-wait metric)."""

from __future__ import annotations

from celery import Celery

from shared.celery_app import create_app
from shared.settings import Settings


def publisher_app(settings: Settings | None = None) -> Celery:
    from monitoring import celery_hooks  # noqa: F401  (before_task_publish: hgq_published_at header)

    return create_app(settings)
