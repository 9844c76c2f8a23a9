"""Celery task names (routing keys off them in `task_routes`)."""

from __future__ import annotations

PLAN_TASK = "hgq.llm.plan"
RESPOND_TASK = "hgq.llm.respond"
SIDE_TASK = "hgq.llm.side"  # a chat UI's side prompt (title, tags, follow-ups): one LLM call, no run


def node_task_name(pool: str) -> str:
    return f"hgq.{pool}.node"
