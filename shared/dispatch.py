"""Publishing work: nodes to their pool's queue (or their model's lane queue), the plan and response
stages to the LLM queue.

Task ids are deterministic, so publishing the same node twice is harmless (the second
delivery finds the node running or done and does nothing). Nothing waits on a Celery result
(state lives in the run's own keys): `ignore_result` spares the publisher a result subscription.
"""

from __future__ import annotations

from celery import Celery

from shared.keys import node_task_id, plan_task_id, respond_task_id
from shared.plan import ValidatedPlan
from shared.run_store import Transition
from shared.task_names import PLAN_TASK, RESPOND_TASK, node_task_name


def publish_nodes(app: Celery, run_id: str, plan: ValidatedPlan, node_ids: list[int]) -> None:
    by_id = plan.by_id()
    for node_id in node_ids:
        node = by_id[node_id]
        app.send_task(node_task_name(node.pool), args=[run_id, node_id], task_id=node_task_id(run_id, node_id),
                      queue=plan.queue_of(node), ignore_result=True)


def publish_plan(app: Celery, run_id: str) -> None:
    app.send_task(PLAN_TASK, args=[run_id], task_id=plan_task_id(run_id), ignore_result=True)


def publish_respond(app: Celery, run_id: str) -> None:
    app.send_task(RESPOND_TASK, args=[run_id], task_id=respond_task_id(run_id), ignore_result=True)


def follow_transition(app: Celery, run_id: str, plan: ValidatedPlan, step: Transition) -> None:
    publish_nodes(app, run_id, plan, step.ready)
    if step.finalize:
        publish_respond(app, run_id)
