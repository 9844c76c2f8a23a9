"""Celery signal receivers for operations: metrics, JSON logs, graceful stop. Import to activate
(`from monitoring import celery_hooks` in the worker apps, `workers.app` and
`planner_service.llm_worker`, and in every publisher via `planner_service.publisher`); nothing in the core calls them.

In a worker process (HGQ_WORKER_POOL is set by `hgq worker` before it imports the app):
  * SIGTERM is remapped to Celery's cold shutdown with soft shutdown (REMAP_SIGTERM=SIGQUIT,
    read by billiard when the worker starts): running tasks get worker_soft_shutdown_timeout
    seconds, then are cancelled and, being acks_late and unacknowledged, handed back to Redis
    for another worker (HGQ_SOFT_SHUTDOWN_ON_SIGTERM=0 keeps Celery's warm shutdown);
  * prometheus_client's multiprocess mode is switched on before any metric exists, and the
    main process serves the merged metrics of the host on HGQ_METRICS_PORT (when set);
  * every task records queue wait, run time and in-progress; retries and failures are
    counted; when a run's last stage ends (respond, or a plan stage that ended the run) its
    state is read once from Redis and the run-level metrics are observed;
  * Celery's logging is replaced by `monitoring.logging` (JSON with request and task ids).

In every process that publishes tasks (API, CLI, workers) each message gets a
`hgq_published_at` header, the start of its queue wait.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import signals

from shared.errors import StageFailed
from shared.settings import get_settings
from shared.task_names import PLAN_TASK, RESPOND_TASK

log = logging.getLogger(__name__)

POOL_ENV = "HGQ_WORKER_POOL"
PUBLISHED_HEADER = "hgq_published_at"
FINAL = frozenset({"succeeded", "failed", "cancelled"})

IS_WORKER = bool(os.environ.get(POOL_ENV))
_ops = get_settings()
M: Any = None  # monitoring.metrics, imported once multiprocess mode is on
_server: Any = None
_main_pid = os.getpid()  # the worker main process (pool children are forked from it)
_started: dict[str, tuple[float, str]] = {}


def _activate_worker() -> None:
    global M
    if _ops.soft_shutdown_on_sigterm:
        if "billiard.common" in sys.modules and os.environ.get("REMAP_SIGTERM") != "SIGQUIT":
            log.warning("billiard was imported before monitoring.celery_hooks: SIGTERM stays a warm shutdown")
        os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    from monitoring.multiproc import MULTIPROC_ENV, WORKER_DIR, activate_multiprocess, metrics_base

    base = None
    if _ops.metrics_dir is None and os.environ.get(MULTIPROC_ENV):  # an operator's (or a parent worker's) folder
        inherited = os.environ[MULTIPROC_ENV]
        base = os.path.dirname(inherited) if WORKER_DIR.match(os.path.basename(inherited)) else inherited
    activate_multiprocess(Path(base) if base else metrics_base())
    from monitoring import metrics

    M = metrics
    # Celery sends worker_shutdown on a warm stop only; a cold (soft) shutdown ends in sys.exit
    atexit.register(_worker_shutdown)


# --- every publisher ------------------------------------------------------------------------------
@signals.before_task_publish.connect(dispatch_uid="hgq-published-at")
def _stamp_published(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers[PUBLISHED_HEADER] = time.time()


# --- worker: tasks ------------------------------------------------------------------------------------
def _queue(request: Any) -> str:
    info = getattr(request, "delivery_info", None) or {}
    return str(info.get("routing_key") or "-")


def _due(request: Any) -> float | None:
    """When the task could first start: published, or its countdown/ETA if later."""
    published = getattr(request, PUBLISHED_HEADER, None)
    if published is None:
        headers = getattr(request, "headers", None) or {}
        published = headers.get(PUBLISHED_HEADER)
    if published is None:
        return None
    due = float(published)
    eta = getattr(request, "eta", None)
    if eta:
        with contextlib.suppress(ValueError):
            due = max(due, datetime.fromisoformat(str(eta)).timestamp())
    return due


@signals.task_prerun.connect(dispatch_uid="hgq-prerun")
def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if M is None or task is None or task_id is None:
        return
    try:
        queue = _queue(task.request)
        _started[task_id] = (time.perf_counter(), queue)
        M.IN_PROGRESS.labels(queue).inc()
        due = _due(task.request)
        if due is not None:
            M.QUEUE_WAIT.labels(queue).observe(max(0.0, time.time() - due))
    except Exception:  # noqa: BLE001 - instrumentation must never fail a task
        M.MONITORING_ERRORS.labels("prerun").inc()
        log.exception("metrics: prerun failed")


@signals.task_postrun.connect(dispatch_uid="hgq-postrun")
def _postrun(task_id: str | None = None, task: Any = None, args: Any = None, retval: Any = None,
             state: str | None = None, **_: Any) -> None:
    if M is None or task is None or task_id is None:
        return
    try:
        started = _started.pop(task_id, None)
        if started is not None:
            t0, queue = started
            M.IN_PROGRESS.labels(queue).dec()
            M.CELERY_RUNTIME.labels(task.name, state or "-").observe(time.perf_counter() - t0)
        status = retval.get("status") if isinstance(retval, dict) else (
            "failed" if isinstance(retval, StageFailed) else None)
        run_ended = (task.name == RESPOND_TASK and status in FINAL) or \
                    (task.name == PLAN_TASK and status in ("failed", "cancelled"))
        if run_ended and args:
            record_run(str(args[0]))
    except Exception:  # noqa: BLE001
        M.MONITORING_ERRORS.labels("postrun").inc()
        log.exception("metrics: postrun failed")


@signals.task_retry.connect(dispatch_uid="hgq-retry")
def _retry(sender: Any = None, request: Any = None, **_: Any) -> None:
    if M is not None:
        M.TASK_RETRIES.labels(_queue(request), getattr(sender, "name", "-")).inc()


@signals.task_failure.connect(dispatch_uid="hgq-failure")
def _failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    if M is not None:
        M.CELERY_FAILURES.labels(getattr(sender, "name", "-"), type(exception).__name__).inc()


def record_run(run_id: str) -> None:
    """Observe the run-level metrics of a finished run from its state in Redis (one pass)."""
    from shared.redis_conn import text_redis
    from shared.run_store import RunStore
    from shared.settings import get_settings

    settings = get_settings()
    run = RunStore(text_redis(settings.redis_url), settings.key_prefix, run_id, settings.run_ttl_s)
    pipe = run.r.pipeline(transaction=False)
    for key in (run.k.meta, run.k.state, run.k.info, run.k.usage, run.k.outputs):
        pipe.hgetall(key)
    meta, states, infos_raw, _usage_raw, outputs_raw = pipe.execute()
    if not meta:
        return
    status = meta.get("status", "unknown")
    M.REQUESTS.labels(status).inc()
    usage = run.usage()
    for stage, u in usage.items():
        M.LLM_CALLS.labels(stage).inc(u.calls)
        M.LLM_TOKENS.labels(stage, "prompt").inc(u.prompt_tokens)
        M.LLM_TOKENS.labels(stage, "completion").inc(u.completion_tokens)
        M.LLM_SECONDS.labels(stage).inc(u.seconds)

    from shared.outputs import TaskOutput
    from shared.plan import ValidatedPlan
    from shared.run_models import NodeInfo

    created = _f(meta.get("created_at"))
    planned = _f(meta.get("planned_at"))
    finished = _f(meta.get("finished_at"))
    select_s = usage["select"].seconds if "select" in usage and usage["select"].calls else None
    if created is not None and planned is not None:
        M.STAGE_LATENCY.labels("plan").observe(max(0.0, planned - created - (select_s or 0.0)))
    if select_s is not None:
        M.STAGE_LATENCY.labels("select").observe(select_s)

    plan = ValidatedPlan.model_validate_json(meta["plan"]) if meta.get("plan") else None
    nodes = plan.nodes if plan else []
    if plan is not None:
        M.DAG_NODES.observe(len(nodes))
    infos = {int(n): NodeInfo.model_validate_json(v) for n, v in infos_raw.items()}
    starts, ends = [], []
    for node in nodes:
        node_status = states.get(str(node.id), "unknown")
        M.TASKS.labels(node.task, node_status).inc()
        info = infos.get(node.id)
        model = (info.model if info and info.model else node.model) or "-"
        if node_status == "failed":
            M.TASK_FAILURES.labels(node.task, model).inc()
        elif node_status == "skipped":
            M.TASKS_SKIPPED.labels(node.task).inc()
        if info and info.started_at is not None and info.finished_at is not None:
            starts.append(info.started_at)
            ends.append(info.finished_at)
            M.TASK_RUNTIME.labels(node.task, model, node_status).observe(max(0.0, info.finished_at - info.started_at))
    if starts:
        M.DAG_MAKESPAN.observe(max(0.0, max(ends) - min(starts)))
    last_end = max(ends) if ends else planned
    if planned is not None and ends:
        M.STAGE_LATENCY.labels("execute").observe(max(0.0, max(ends) - planned))
    llm_failed = meta.get("llm_failed")
    if llm_failed:
        M.LLM_ERRORS.labels(llm_failed).inc()
    if llm_failed == "plan" and created is not None and finished is not None:
        M.FAILED_STAGE_LATENCY.labels("plan").observe(max(0.0, finished - created))
    if finished is not None and last_end is not None:
        (M.FAILED_STAGE_LATENCY if llm_failed == "respond" else M.STAGE_LATENCY).labels("respond").observe(
            max(0.0, finished - last_end))
    for raw in outputs_raw.values():
        for ref in TaskOutput.model_validate_json(raw).artifacts:
            M.ARTIFACTS.labels(ref.kind).inc()
            M.ARTIFACT_BYTES.labels(ref.kind).inc(ref.size)


def _f(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# --- worker: lifecycle -------------------------------------------------------------------------------
@signals.worker_init.connect(dispatch_uid="hgq-worker-init")
def _worker_init(sender: Any = None, **_: Any) -> None:
    if IS_WORKER and _ops.worker_soft_shutdown_s is not None and sender is not None:
        sender.app.conf.worker_soft_shutdown_timeout = float(_ops.worker_soft_shutdown_s)


@signals.worker_ready.connect(dispatch_uid="hgq-metrics-server")
def _serve_metrics(**_: Any) -> None:
    global _server
    if M is None or not _ops.metrics_port:
        return
    from monitoring.multiproc import MULTIPROC_ENV

    base = os.path.dirname(os.environ[MULTIPROC_ENV])
    try:
        _server = M.serve(_ops.metrics_port, _ops.metrics_host, base=Path(base))
        log.info("metrics of this host's workers at http://%s:%s/metrics", _ops.metrics_host, _ops.metrics_port)
    except OSError as exc:  # another worker on this host serves the same folder already
        log.info("metrics port %s not bound (%s): another process serves it", _ops.metrics_port, exc)


@signals.worker_process_init.connect(dispatch_uid="hgq-child-init")
def _child_init(**_: Any) -> None:
    global _server
    _started.clear()
    server, _server = _server, None
    if server is not None:  # the listening socket came along with fork(): only the main process serves
        with contextlib.suppress(OSError):
            server.socket.close()


@signals.worker_process_shutdown.connect(dispatch_uid="hgq-child-exit")
def _child_exit(pid: int | None = None, **_: Any) -> None:
    if M is not None:
        from monitoring.multiproc import mark_dead

        mark_dead(pid or os.getpid())


@signals.worker_shutdown.connect(dispatch_uid="hgq-worker-shutdown")
def _worker_shutdown(**_: Any) -> None:
    global _server
    if M is None or os.getpid() != _main_pid:
        return
    server, _server = _server, None
    if server is not None:  # shutdown() waits for serve_forever: bound it, the thread may be gone at exit
        stopper = threading.Thread(target=server.shutdown, name="hgq-metrics-stop", daemon=True)
        stopper.start()
        stopper.join(2.0)
        with contextlib.suppress(OSError):
            server.server_close()
    from monitoring.multiproc import remove_own_dir

    remove_own_dir()


# --- logging ---------------------------------------------------------------------------------------
@signals.setup_logging.connect(dispatch_uid="hgq-logging")
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    from monitoring.logging import setup_logging

    setup_logging(loglevel)


if IS_WORKER:  # last: every receiver above exists; nothing before imported prometheus_client or billiard
    _activate_worker()
