"""Celery task registrations: one node task per pool (the plan and respond stages are the
planner's: `planner_service.tasks`)."""

from __future__ import annotations

from typing import Any

from celery import Task

from shared.celery_app import app
from shared.redis_outage import through_outages
from shared.settings import POOLS, get_settings
from shared.task_names import node_task_name
from workers.node_runner import execute_node


def _node_task(pool: str) -> Task:
    def run_node(self: Task, run_id: str, node_id: int) -> dict[str, Any]:
        s = get_settings()
        return through_outages(lambda: execute_node(self, run_id, node_id), s.redis_url, s.redis_outage_s,
                               f"node {run_id}.{node_id}")

    run_node.__name__ = f"run_{pool}_node"
    return app.task(bind=True, name=node_task_name(pool), acks_late=True, reject_on_worker_lost=True)(run_node)


NODE_TASKS = {pool: _node_task(pool) for pool in POOLS}
