"""Celery task names (routing keys off them in `task_routes`)."""

from __future__ import annotations

PLAN_TASK = "hgq.llm.plan"
RESPOND_TASK = "hgq.llm.respond"


def node_task_name(pool: str) -> str:
    return f"hgq.{pool}.node"
