"""hgq's Prometheus metrics (all named `hgq_*`) and the ways to expose them.

Where values come from:
  * `monitoring.celery_hooks` observes them in the workers (Celery signals, and one read of
    a run's state in Redis when its last stage ends);
  * `MetricsMiddleware` (optional) counts HTTP requests of the planner API.

Prefork workers write through prometheus_client's multiprocess mode: each worker main
process gets its own folder `<base>/w<pid>` (PROMETHEUS_MULTIPROC_DIR, set by
`monitoring.multiproc.activate_multiprocess` before this module is imported) and its pool
children inherit it. `DirCollector(base)` merges every folder, so one endpoint on a host serves
all its worker processes: the worker main process serves it on HGQ_METRICS_PORT, or run
`python -m monitoring.metrics --port 9808` as a standalone exporter.

The metrics live in their own registry (`REGISTRY`), not prometheus_client's default one,
so processes that import hgq but expose their own metrics (Flower) do not leak empty hgq
series.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from monitoring.multiproc import MULTIPROC_ENV, WORKER_DIR, metrics_base, workers_registry

log = logging.getLogger(__name__)

# --- the metrics ---------------------------------------------------------------------------------------
REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_WAIT = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

REQUESTS = Counter("hgq_requests", "Runs that reached a final status", ["status"], registry=REGISTRY)
STAGE_LATENCY = Histogram(
    "hgq_stage_latency_seconds",
    "Wall time of a run's stages: plan (accepted -> DAG written, less model selection), select (LLM "
    "model selection), execute (DAG written -> last task done), respond (last task done -> answer)",
    ["stage"], buckets=_LATENCY, registry=REGISTRY)
LLM_TOKENS = Counter("hgq_llm_tokens", "LLM tokens per stage", ["stage", "kind"], registry=REGISTRY)
LLM_CALLS = Counter("hgq_llm_calls", "LLM calls per stage", ["stage"], registry=REGISTRY)
LLM_SECONDS = Counter("hgq_llm_seconds", "Seconds spent waiting for the LLM per stage", ["stage"],
                      registry=REGISTRY)
DAG_MAKESPAN = Histogram("hgq_dag_makespan_seconds", "First task started -> last task finished, per run",
                         buckets=_LATENCY, registry=REGISTRY)
DAG_NODES = Histogram("hgq_dag_nodes", "Tasks per plan", buckets=(0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
                      registry=REGISTRY)
TASK_RUNTIME = Histogram("hgq_task_runtime_seconds", "Runtime of one task (expert run) by type and model",
                         ["task", "model", "status"], buckets=_LATENCY, registry=REGISTRY)
TASKS = Counter("hgq_tasks", "Tasks by final status", ["task", "status"], registry=REGISTRY)
TASK_FAILURES = Counter("hgq_task_failures", "Tasks that failed", ["task", "model"], registry=REGISTRY)
TASKS_SKIPPED = Counter("hgq_tasks_skipped", "Tasks skipped because a dependency failed", ["task"],
                        registry=REGISTRY)
TASK_RETRIES = Counter("hgq_task_retries", "Celery retries (transient expert errors, lease waits)",
                       ["queue", "name"], registry=REGISTRY)
QUEUE_WAIT = Histogram("hgq_queue_wait_seconds", "Published (or due, for countdowns) -> started, per queue",
                       ["queue"], buckets=_WAIT, registry=REGISTRY)
CELERY_RUNTIME = Histogram("hgq_celery_task_seconds", "Celery task body time (nodes, plan, respond)",
                           ["name", "state"], buckets=_LATENCY, registry=REGISTRY)
CELERY_FAILURES = Counter("hgq_celery_task_failures", "Celery tasks that raised", ["name", "exception"],
                          registry=REGISTRY)
IN_PROGRESS = Gauge("hgq_tasks_in_progress", "Celery tasks executing now", ["queue"],
                    multiprocess_mode="livesum", registry=REGISTRY)
ARTIFACTS = Counter("hgq_artifacts_stored", "Artifacts (images, audio) produced by tasks", ["kind"],
                    registry=REGISTRY)
ARTIFACT_BYTES = Counter("hgq_artifact_bytes", "Bytes of artifacts produced by tasks", ["kind"],
                         registry=REGISTRY)
HTTP_REQUESTS = Counter("hgq_http_requests", "HTTP requests of the planner API", ["method", "route", "code"],
                        registry=REGISTRY)
HTTP_LATENCY = Histogram("hgq_http_request_seconds", "HTTP request latency of the planner API",
                         ["method", "route"], buckets=_WAIT, registry=REGISTRY)
LLM_ERRORS = Counter("hgq_llm_errors", "Runs whose LLM stage failed (endpoint error, deadline, unusable "
                     "answer), by stage", ["stage"], registry=REGISTRY)
FAILED_STAGE_LATENCY = Histogram("hgq_failed_stage_latency_seconds",
                                 "Wall time of the stage that failed a run (plan: accepted -> failed; respond: "
                                 "last task done -> failed)", ["stage"], buckets=_LATENCY, registry=REGISTRY)
MONITORING_ERRORS = Counter("hgq_monitoring_errors", "Failures of hgq's own instrumentation", ["where"],
                            registry=REGISTRY)


class QueueCollector:
    """Read at scrape time from Redis: queue lengths and live workers per pool (the same values
    from every exporter of a deployment: aggregate with max() in queries)."""

    NAMES = ("hgq_queue_length", "hgq_workers", "hgq_worker_processes", "hgq_llm_backlog")

    def __init__(self, settings: Any = None):
        self.settings = settings
        self._depths: Any = None  # kept across scrapes (one broker connection)

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        from shared.broker_queues import QueueDepths
        from shared.llm_backlog import LLMBacklog
        from shared.redis_conn import text_redis
        from shared.registry import live_workers
        from shared.settings import ALL_QUEUES, get_settings

        settings = self.settings or get_settings()
        length = GaugeMetricFamily("hgq_queue_length", "Messages waiting in a queue (on the broker)",
                                   labels=["queue"])
        workers = GaugeMetricFamily("hgq_workers", "Live worker processes (main) per pool (or lane)",
                                    labels=["pool"])
        procs = GaugeMetricFamily("hgq_worker_processes", "Execution slots (concurrency) per pool (or lane)",
                                  labels=["pool"])
        backlog = GaugeMetricFamily("hgq_llm_backlog", "LLM calls not yet answered (calls) and plan/respond "
                                    "stages waiting for the LLM worker (queued)", labels=["kind"])
        try:
            client = text_redis(settings.redis_url)
            live = live_workers(client, settings.key_prefix)
            if self._depths is None:
                self._depths = QueueDepths(settings, client)
            depths = self._depths
            lanes = sorted({w.queue for w in live} - set(ALL_QUEUES))  # `hgq worker POOL --lane L`: POOL.L
            for q in (*ALL_QUEUES, *lanes):
                length.add_metric([q], depths.length(q))
                ws = [w for w in live if w.queue == q]
                workers.add_metric([q], len(ws))
                procs.add_metric([q], sum(w.concurrency for w in ws))
            calls = LLMBacklog.from_settings(client, settings)
            backlog.add_metric(["calls"], calls.in_flight())
            backlog.add_metric(["queued"], depths.length("llm"))
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis blinked
            MONITORING_ERRORS.labels("queue_collector").inc()
            return []
        return [length, workers, procs, backlog]


def exported_names() -> set[str]:
    """Every series name hgq can export (counters as `_total`, histograms with their suffixes)."""
    names: set[str] = set(QueueCollector.NAMES)
    for metric in REGISTRY.collect():
        base = metric.name
        if metric.type == "counter":
            names |= {f"{base}_total", f"{base}_created"}
        elif metric.type == "histogram":
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
        else:
            names.add(base)
    return names


# --- exposition -------------------------------------------------------------------------------------
def local_registry() -> CollectorRegistry:
    """What this process should expose: its multiprocess folder's base when it writes files
    (a process with PROMETHEUS_MULTIPROC_DIR set), else its own in-memory registry."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        p = Path(path)
        return workers_registry(p.parent if WORKER_DIR.match(p.name) else p)
    return REGISTRY


def exposition(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The text exposition and its content type (for a `/metrics` route)."""
    return generate_latest(registry or local_registry()), CONTENT_TYPE_LATEST


def asgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Awaitable[None]]:
    """An ASGI app serving the metrics, to mount at `/metrics` (FastAPI: `app.mount("/metrics", asgi_app())`)."""
    from prometheus_client import make_asgi_app

    return make_asgi_app(registry or local_registry())


def serve(port: int, host: str = "127.0.0.1", base: Path | None = None, queues: bool = True) -> Any:
    """Serve the workers' merged metrics (and, with `queues`, the queue lengths read from Redis)
    over HTTP from a daemon thread; returns the server."""
    from prometheus_client import start_http_server

    registry = workers_registry(base)
    if queues:
        registry.register(QueueCollector())
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


# --- ASGI middleware for the planner API -------------------------------------------------------------
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


class MetricsMiddleware:
    """Counts HTTP requests by method, route template and status code (`app.add_middleware(MetricsMiddleware)`)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[Any]]) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = [500]

        async def _send(message: MutableMapping[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                code[0] = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/metrics" if scope.get("path", "").startswith("/metrics")
                                                    else "unmatched")
            method = str(scope.get("method", "GET"))
            HTTP_REQUESTS.labels(method, path, str(code[0])).inc()
            HTTP_LATENCY.labels(method, path).observe(time.perf_counter() - started)


# --- standalone exporter: python -m monitoring.metrics --port 9808 ----------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the merged metrics of hgq's worker processes")
    parser.add_argument("--port", type=int, default=None, help="default: HGQ_METRICS_PORT or 9808")
    parser.add_argument("--host", default=None, help="default: HGQ_METRICS_HOST")
    parser.add_argument("--dir", type=Path, default=None, help="default: HGQ_METRICS_DIR or <HGQ_HOME>/metrics")
    args = parser.parse_args(argv)
    from shared.settings import get_settings

    ops = get_settings()
    port = args.port or ops.metrics_port or 9808
    host = args.host or ops.metrics_host
    base = args.dir or metrics_base()
    base.mkdir(parents=True, exist_ok=True)
    serve(port, host, base)
    print(f"hgq metrics: serving {base} on http://{host}:{port}/metrics", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
