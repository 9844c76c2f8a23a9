"""Celery task registrations: one node task per pool, plus the plan and response stages."""

from __future__ import annotations

from typing import Any

from celery import Task

from shared.settings import POOLS
from workers.app import app
from workers.names import PLAN_TASK, RESPOND_TASK, node_task_name
from workers.node_runner import execute_node


def _node_task(pool: str) -> Task:
    def run_node(self: Task, run_id: str, node_id: int) -> dict[str, Any]:
        return execute_node(self, run_id, node_id)

    run_node.__name__ = f"run_{pool}_node"
    return app.task(bind=True, name=node_task_name(pool), acks_late=True, reject_on_worker_lost=True)(run_node)


NODE_TASKS = {pool: _node_task(pool) for pool in POOLS}


@app.task(bind=True, name=PLAN_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def plan_stage(self: Task, run_id: str) -> dict[str, Any]:
    from planner_service.stages import run_plan_stage

    return run_plan_stage(self.app, run_id)


@app.task(bind=True, name=RESPOND_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def respond_stage(self: Task, run_id: str) -> dict[str, Any]:
    from planner_service.stages import run_respond_stage

    return run_respond_stage(self.app, run_id)
