"""The planner's Celery tasks: the plan and respond stages, consumed by the LLM queue's worker
(which warms the planner's demonstration retrieval when it starts)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.signals import worker_ready

from planner_service.demo_retrieval import warm
from planner_service.stages import run_plan_stage, run_respond_stage
from shared.celery_app import app
from shared.errors import StageFailed
from shared.redis_outage import through_outages
from shared.settings import get_settings
from shared.task_names import PLAN_TASK, RESPOND_TASK, SIDE_TASK


@worker_ready.connect(dispatch_uid="hgq-warm-demo-retrieval")
def _warm_retrieval(**_: object) -> None:
    """Load MiniLM for demonstration retrieval while the worker idles, not inside the first plan
    (with HGQ_PRELOAD_MODELS, as the pools load their models: loading competes for the CPU, and a
    stack that runs explicit plans never needs it)."""
    if get_settings().preload_models:
        threading.Thread(target=warm, name="hgq-warm-demos", daemon=True).start()


@app.task(bind=True, name=PLAN_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def plan_stage(self: Task, run_id: str) -> dict[str, Any]:
    return _failed_raises(_riding_outages(lambda: run_plan_stage(self.app, run_id), f"plan {run_id}"))


@app.task(bind=True, name=RESPOND_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def respond_stage(self: Task, run_id: str) -> dict[str, Any]:
    return _failed_raises(_riding_outages(lambda: run_respond_stage(self.app, run_id), f"respond {run_id}"))


@app.task(name=SIDE_TASK, ignore_result=False, acks_late=False, time_limit=120)
def side_prompt(messages: list[dict[str, str]], max_tokens: int) -> str:
    """A chat UI's side prompt (a title, tags, follow-up questions), answered by the LLM as it is:
    no plan, no tasks, no run. The caller waits on the result and has a fallback."""
    from shared.llm_client import LLM

    return LLM(get_settings()).chat("side", messages, max_tokens=max_tokens)


def _riding_outages(step: Callable[[], dict[str, Any]], what: str) -> dict[str, Any]:
    s = get_settings()
    return through_outages(step, s.redis_url, s.redis_outage_s, what)


def _failed_raises(result: dict[str, Any]) -> dict[str, Any]:
    """A stage whose run failed (already recorded) ends as a Celery failure: Flower and the task
    metrics show it failed, with the reason."""
    if result.get("status") == "failed":
        raise StageFailed(str(result.get("error") or "the run failed"))
    return result
