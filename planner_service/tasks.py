"""The planner's Celery tasks: the plan and respond stages, consumed by the LLM queue's worker."""

from __future__ import annotations

from typing import Any

from celery import Task

from planner_service.stages import run_plan_stage, run_respond_stage
from shared.celery_app import app
from shared.task_names import PLAN_TASK, RESPOND_TASK


@app.task(bind=True, name=PLAN_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def plan_stage(self: Task, run_id: str) -> dict[str, Any]:
    return run_plan_stage(self.app, run_id)


@app.task(bind=True, name=RESPOND_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def respond_stage(self: Task, run_id: str) -> dict[str, Any]:
    return run_respond_stage(self.app, run_id)
