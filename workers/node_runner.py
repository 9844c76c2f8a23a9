"""The body of every DAG node: take the lease, run the expert, write the output once, hand on.

Exactly-once effect under redelivery: START (Lua) refuses terminal nodes and nodes whose
lease another live delivery holds; the output is written with HSETNX; COMPLETE (Lua) is
idempotent and re-announces queued successors when replayed, so a worker dying between any
two steps loses nothing.

When the node's model fails for a reason that is not the input's, the next candidate model of the
selection stage (node.fallbacks) runs in the same delivery; every model run that did not simply
succeed is recorded in NodeInfo.model_attempts (shown in the run).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from shared.artifacts import ArtifactStore
from shared.dispatch import follow_transition
from shared.errors import ExpertError, ModelUnavailable, TransientExpertError
from shared.outputs import ExpertResult, TaskOutput
from shared.plan import Node, ValidatedPlan
from shared.redis_conn import bytes_redis, text_redis
from shared.run_models import ModelAttempt, NodeInfo
from shared.run_store import RunStore
from shared.settings import Settings, get_settings
from workers.expert import get_expert
from workers.inputs import empty_upstream_text, resolve_inputs
from workers.model_sources import register_model_sources
from workers.pools import import_pool

log = logging.getLogger(__name__)

#: The run a worker thread is executing a node of (LLM-backed experts account usage to it).
current_run: contextvars.ContextVar[RunStore | None] = contextvars.ContextVar("current_run", default=None)

_plans: dict[str, ValidatedPlan] = {}  # plans are immutable once written: cache per process


def run_store(run_id: str, settings: Settings) -> RunStore:
    return RunStore(text_redis(settings.redis_url), settings.key_prefix, run_id, settings.run_ttl_s)


def artifact_store(settings: Settings) -> ArtifactStore:
    return ArtifactStore(bytes_redis(settings.redis_url), settings.key_prefix, settings.artifact_ttl_s,
                         settings.max_artifact_bytes)


def _load_plan(run: RunStore, node_id: int | None = None) -> ValidatedPlan | None:
    plan = _plans.get(run.run_id)
    if plan is None or (node_id is not None and node_id not in plan.by_id()):  # new, or a plan that streamed
        plan = run.plan()
        if plan is not None:
            if len(_plans) > 512:
                _plans.clear()
            _plans[run.run_id] = plan
    return plan


class _LeaseRenewer:
    """One daemon thread per process renews the leases of the nodes this process is running."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], tuple[RunStore, str, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _loop(self) -> None:
        while True:
            with self._lock:
                held = list(self._held.items())
            interval = min((lease for _, (_, _, lease) in held), default=get_settings().lease_s) / 3
            for (_, node), (run, token, lease_s) in held:
                try:
                    run.renew(node, token, lease_s)
                except Exception as exc:  # noqa: BLE001 - a missed renewal only risks a duplicate, which HSETNX absorbs
                    log.warning("lease renewal failed: %s", exc)
            time.sleep(interval)

    @contextlib.contextmanager
    def holding(self, run: RunStore, node: int, token: str, lease_s: float) -> Iterator[None]:
        key = (run.run_id, node)
        with self._lock:
            if self._thread is None or self._pid != os.getpid():  # (re)start after a fork
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name="hgq-lease", daemon=True)
                self._thread.start()
            self._held[key] = (run, token, lease_s)
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(key, None)


_leases = _LeaseRenewer()


def execute_node(task: Task, run_id: str, node_id: int) -> dict[str, Any]:
    settings = get_settings()
    run = run_store(run_id, settings)
    plan = _load_plan(run, node_id)
    if plan is None:
        log.warning("run %s has no plan (expired?); dropping node %s", run_id, node_id)
        return {"status": "no-plan"}
    if node_id not in plan.by_id():  # started while the plan streamed, then left out of it
        return {"status": "dropped"}
    node = plan.node(node_id)
    token = uuid.uuid4().hex
    hostname = task.request.hostname or "?"
    queue = (task.request.delivery_info or {}).get("routing_key") or node.pool
    status, attempt = run.start(node_id, token, settings.lease_s, settings.task_max_attempts,
                                {"worker": hostname, "queue": queue, "model": node.model, "pid": os.getpid()},
                                clean_retries=task.request.retries or 0)
    if status == "busy":  # another delivery holds the lease: come back when it would have expired
        raise task.retry(countdown=max(attempt, 100) / 1000 + 0.05, max_retries=None)
    if status in ("succeeded", "failed", "skipped", "cancelled"):
        follow_transition(task.app, run_id, plan, run.complete(plan, node_id, status))  # replay: idempotent
        return {"status": status, "replay": True}
    if status == "cancel":
        follow_transition(task.app, run_id, plan, run.complete(plan, node_id, "cancelled"))
        return {"status": "cancelled"}
    if status == "poison":
        return _fail(task, run, plan, node, f"gave up after {settings.task_max_attempts} deliveries that "
                     "never finished (the worker was lost each time)")
    if status != "run":
        return {"status": status}

    prev = run.info(node_id) if attempt > 1 else None  # a retry or redelivery goes on where the last stopped
    model = prev.model if prev is not None and prev.model in node.candidates() else node.model
    info = NodeInfo(queue=queue, worker=hostname, model=model, pid=os.getpid(), started_at=time.time(),
                    retries=task.request.retries or 0, model_attempts=prev.model_attempts if prev else [])
    run.set_info(node_id, info)
    ctx_token = current_run.set(run)
    now = _Progress(info, time.time())  # the model running now, and since when (fallbacks move it on)
    try:
        output = _run_candidates(task, node, run, settings, now, token)
    except TransientExpertError as exc:
        run.release(node_id, token)
        retries = task.request.retries or 0
        give_up = retries >= settings.task_max_retries
        info = _attempted(now.info, now.started, str(exc), "failed" if give_up else "retry")
        run.set_info(node_id, info.model_copy(update={"retries": info.retries + 1, "error": str(exc)}))
        if give_up:
            return _fail(task, run, plan, node, f"{exc} (after {retries} retries)", info)
        raise task.retry(countdown=settings.task_retry_backoff_s * 2**retries, max_retries=None) from exc
    except Retry:
        raise
    except SoftTimeLimitExceeded:
        error = f"timed out after {settings.task_soft_time_limit_s:g}s"
        return _fail(task, run, plan, node, error, _attempted(now.info, now.started, error, "failed"))
    except ExpertError as exc:
        return _fail(task, run, plan, node, str(exc), _attempted(now.info, now.started, str(exc), "failed"))
    except Exception as exc:  # noqa: BLE001 - an expert bug fails its node, never the run
        log.exception("node %s.%s crashed", run_id, node_id)
        error = f"{type(exc).__name__}: {exc}"
        return _fail(task, run, plan, node, error, _attempted(now.info, now.started, error, "failed"))
    finally:
        current_run.reset(ctx_token)

    info = _attempted(now.info, now.started, None, "succeeded") if now.info.model_attempts else now.info
    info = info.model_copy(update={"finished_at": time.time()})
    if not _record(task, run, plan, node_id, "succeeded", info, output=output):
        run.release(node_id, token)
        return {"status": "dropped"}
    return {"status": "succeeded"}


@dataclass
class _Progress:
    info: NodeInfo
    started: float


def _run_candidates(task: Task, node: Node, run: RunStore, settings: Settings, now: _Progress,
                    token: str) -> TaskOutput:
    """Run the node's current model; when it fails for a reason that is not the input's, record the
    attempt and go on with the next candidate (node.fallbacks) in this same delivery. Raises the last
    error when no candidate is left or the error is final (`now` then names the model that raised)."""
    while True:
        now.started = time.time()
        try:
            with _leases.holding(run, node.id, token, settings.lease_s):
                return _run_expert(node, now.info.model, run, settings)
        except (Retry, SoftTimeLimitExceeded):
            raise
        except Exception as exc:
            nxt = _next_candidate(node, now.info.model)
            if nxt is None or not _falls_back(exc, task.request.retries or 0, settings):
                raise
            error = str(exc) if isinstance(exc, ExpertError) else f"{type(exc).__name__}: {exc}"
            log.warning("node %s.%s: model %s failed (%s); falling back to %s", run.run_id, node.id,
                        now.info.model, error, nxt)
            now.info = _attempted(now.info, now.started, error, "fallback").model_copy(update={"model": nxt})
            run.set_info(node.id, now.info)


def _falls_back(exc: Exception, retries: int, settings: Settings) -> bool:
    """A model's failure that the next candidate may not have: not the input's fault."""
    if isinstance(exc, TransientExpertError):  # retried on this model first, unless the expert already did
        return exc.exhausted or retries >= settings.task_max_retries
    if isinstance(exc, ModelUnavailable):
        return True
    return not isinstance(exc, ExpertError)  # a crash: another model may well work


def _next_candidate(node: Node, model: str | None) -> str | None:
    candidates = node.candidates()
    index = candidates.index(model) if model in candidates else -1
    return candidates[index + 1] if index + 1 < len(candidates) else None


def _attempted(info: NodeInfo, started: float, error: str | None, outcome: str) -> NodeInfo:
    attempt = ModelAttempt(model=info.model, outcome=outcome, error=error,
                           seconds=round(time.time() - started, 3), worker=info.worker)
    return info.model_copy(update={"model_attempts": [*info.model_attempts, attempt]})


def _run_expert(node: Node, model: str | None, run: RunStore, settings: Settings) -> TaskOutput:
    if model is None:
        raise ExpertError(f"no model was selected for task {node.id}")
    try:
        expert = get_expert(model)
    except KeyError:
        import_pool(node.pool)
        register_model_sources(node.pool, settings)
        try:
            expert = get_expert(model)
        except KeyError as exc:
            raise ModelUnavailable(f"model {model} is not served by this worker") from exc
    inputs = resolve_inputs(node, run, artifact_store(settings))
    empty = empty_upstream_text(node, inputs)
    if empty is not None:  # e.g. no speech in the clip: pass the emptiness on instead of failing the run
        return TaskOutput(text="", data={"note": f"nothing to do: '{empty}' came empty from an earlier task"})
    expert.ensure_loaded()
    result: ExpertResult = expert.run(inputs, node.params)
    store = artifact_store(settings)
    refs = [store.put(m.data, m.mime, m.kind, m.name) for m in result.media]
    return TaskOutput(text=result.text, labels=result.labels, boxes=result.boxes, artifacts=refs, data=result.data)


def _fail(task: Task, run: RunStore, plan: ValidatedPlan, node: Node, error: str,
          info: NodeInfo | None = None) -> dict[str, Any]:
    info = (info or run.info(node.id)).model_copy(update={"finished_at": time.time(), "error": error})
    if not _record(task, run, plan, node.id, "failed", info, extra={"error": error}):
        return {"status": "dropped"}
    return {"status": "failed", "error": error}


def _record(task: Task, run: RunStore, plan: ValidatedPlan, node_id: int, outcome: str, info: NodeInfo,
            output: TaskOutput | None = None, extra: dict[str, Any] | None = None) -> bool:
    """Record a node's outcome (with its output and info) and hand on to its successors; False when
    the node is no longer part of the run (the run ended first, or the final plan left it out).

    A task that started while its plan still streams is recorded at once (COMPLETE_STREAMING), and
    the final plan, when written, is wired to its outcome (RunStore.finalize_streamed): a dependent
    can then start before the plan's last token. Once the whole plan is written, the outcome is
    recorded against it, not against the partial plan this worker may hold."""
    streaming, response = run.r.hmget(run.k.meta, "streaming", "response")
    if streaming == "1" and response is None:
        held = run.complete_streaming(node_id, outcome, extra, output, info)
        if held == "held":
            return True
        if held == "ended":
            return False
        streaming = "0"
    if streaming is not None:  # the plan streamed: the one in hand may be partial
        if response is not None:
            return False
        _plans.pop(run.run_id, None)
        final = _load_plan(run, node_id)
        if final is None or node_id not in final.by_id():
            return False
        plan = final
    if output is not None:
        run.write_output(node_id, output, info)
    else:
        run.set_info(node_id, info)
    follow_transition(task.app, run.run_id, plan, run.complete(plan, node_id, outcome, extra))
    return True
