"""Operations on real workers: Prometheus metrics, JSON logs, Flower, scaling out, graceful stop,
`hgq status`, and the dashboards / scrape / KEDA files.

The workers here are this module's own (all four pools, on Redis database 1 of the session's
redis-server, so the session's workers never take their tasks). They import
`monitoring.celery_hooks` explicitly (LAUNCH), so the tests pass whether or not workers/app.py
imports it yet; they share one metrics folder and serve it on one port.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import diag, run_plan, wait_final

ROOT = Path(__file__).resolve().parent.parent
MON = ROOT / "monitoring"
LAUNCH = ("import os, sys; os.environ['HGQ_WORKER_POOL'] = sys.argv[1]; import monitoring.celery_hooks; "
          "from planner_service.cli import main; sys.argv = ['hgq', 'worker', *sys.argv[1:]]; main()")
SOFT_SHUTDOWN_S = 2.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MonStack:
    settings: Any
    client: Any
    env: dict[str, str]
    port: int
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def redis(self) -> Any:
        from shared.redis_conn import text_redis

        return text_redis(self.settings.redis_url)

    def workers(self, pool: str | None = None) -> list[Any]:
        from shared.registry import live_workers

        return [w for w in live_workers(self.redis(), self.settings.key_prefix) if pool in (None, w.pool)]

    def spawn_worker(self, pool: str, timeout_s: float = 60) -> tuple[subprocess.Popen, str]:
        """Start `hgq worker <pool>` (with the hooks); return it and its Celery hostname once ready."""
        log = open(self.logs / f"worker-{pool}-{len(self.procs)}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-c", LAUNCH, pool], cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            mine = [w for w in self.workers(pool) if w.pid == proc.pid]
            if mine:
                return proc, mine[0].hostname
            assert proc.poll() is None, f"worker {pool} exited with {proc.returncode}"
            time.sleep(0.1)
        raise AssertionError(f"worker {pool} not ready after {timeout_s}s")

    def stop(self, proc: subprocess.Popen, timeout_s: float = 30) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def mon(settings, hgq_env, tmp_path_factory) -> Iterator[MonStack]:  # type: ignore[no-untyped-def]
    import monitoring.celery_hooks  # noqa: F401 - what workers/app.py imports: stamps the messages this process publishes
    from planner_service.client import HgqClient
    from shared.settings import ALL_QUEUES
    from workers.app import create_app

    url = settings.redis_url.rsplit("/", 1)[0] + "/1"
    s1 = settings.model_copy(update={"redis_url": url})
    home = tmp_path_factory.mktemp("mon")
    port = _free_port()
    env = {**os.environ, "REDIS_URL": url, "HGQ_METRICS_DIR": str(home / "metrics"), "HGQ_METRICS_PORT": str(port),
           "HGQ_WORKER_CONCURRENCY": "2", "HGQ_WORKER_SOFT_SHUTDOWN_S": str(SOFT_SHUTDOWN_S), "HGQ_LOG_FORMAT": "json",
           "PYTHONPATH": str(ROOT)}
    for k in ("PROMETHEUS_MULTIPROC_DIR", "HGQ_WORKER_POOL", "REMAP_SIGTERM"):
        env.pop(k, None)
    st = MonStack(s1, HgqClient(s1, create_app(s1)), env, port, home)
    st.redis().flushdb()
    try:
        import threading

        errors: list[BaseException] = []

        def start(q: str) -> None:
            try:
                st.spawn_worker(q)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(q,)) for q in ALL_QUEUES]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        _wait(lambda: _get(f"http://127.0.0.1:{port}/metrics")[0] == 200, 20, "workers' metrics endpoint")
        yield st
    finally:
        for p in st.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in st.procs:
            try:
                p.wait(timeout=SOFT_SHUTDOWN_S + 20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


# --- helpers ----------------------------------------------------------------------------------------
def _wait(check, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what}: not true after {timeout_s}s")


def _get(url: str, auth: tuple[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback test servers
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    status, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    out: Samples = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def val(samples: Samples, metric: str, /, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and want <= ls)


def wait_metric(port: int, metric: str, at_least: float, timeout_s: float = 10, /, **labels: str) -> Samples:
    """Run-level metrics are observed just after the answer is written: poll for them."""
    deadline = time.monotonic() + timeout_s
    while True:
        s = scrape(port)
        if val(s, metric, **labels) >= at_least or time.monotonic() > deadline:
            return s
        time.sleep(0.1)


# --- metrics -----------------------------------------------------------------------------------------
def test_a_run_moves_the_workers_metrics(mon: MonStack, fake_llm) -> None:  # type: ignore[no-untyped-def]
    before = scrape(mon.port)
    plan = [diag(0, [], 0.2), diag(1, [0], 0.3, text="<GENERATED>-0"),
            diag(2, [0], 0.3, pool="vision", text="<GENERATED>-0")]
    view = run_plan(mon.client, plan)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    req = ("hgq_requests_total", {"status": "succeeded"})
    after = wait_metric(mon.port, req[0], val(before, req[0], **req[1]) + 1, 10, **req[1])

    def d(metric: str, /, **labels: str) -> float:
        return val(after, metric, **labels) - val(before, metric, **labels)

    assert d("hgq_requests_total", status="succeeded") == 1
    text = {"task": "diag-text", "model": "hgq/diag-text", "status": "succeeded"}
    assert d("hgq_task_runtime_seconds_count", **text) == 2
    assert d("hgq_task_runtime_seconds_sum", **text) >= 0.5
    assert d("hgq_task_runtime_seconds_count", task="diag-vision", model="hgq/diag-vision") == 1
    assert d("hgq_task_runtime_seconds_bucket", le="+Inf", **text) == 2
    assert d("hgq_tasks_total", task="diag-text", status="succeeded") == 2
    assert d("hgq_dag_makespan_seconds_count") == 1
    assert 0.5 <= d("hgq_dag_makespan_seconds_sum") < 30
    assert d("hgq_dag_nodes_sum") == 3
    for stage in ("plan", "execute", "respond"):
        assert d("hgq_stage_latency_seconds_count", stage=stage) == 1, stage
    assert d("hgq_stage_latency_seconds_sum", stage="execute") >= 0.5
    # the respond stage called the (scripted) LLM once and its tokens were counted
    assert d("hgq_llm_calls_total", stage="respond") == 1
    assert d("hgq_llm_tokens_total", stage="respond", kind="prompt") > 0
    assert d("hgq_llm_tokens_total", stage="respond", kind="completion") > 0
    # queue wait: every task (3 nodes; plan and respond on llm) was stamped when published
    assert d("hgq_queue_wait_seconds_count", queue="text") >= 2
    assert d("hgq_queue_wait_seconds_count", queue="vision") >= 1
    assert d("hgq_queue_wait_seconds_count", queue="llm") >= 2
    assert d("hgq_celery_task_seconds_count", name="hgq.text.node", state="SUCCESS") >= 2
    assert d("hgq_celery_task_seconds_count", name="hgq.llm.respond", state="SUCCESS") == 1
    assert val(after, "hgq_tasks_in_progress") == 0
    assert val(after, "hgq_monitoring_errors_total") == 0
    # read from Redis at scrape time
    for q in ("text", "vision", "audio", "llm"):
        assert val(after, "hgq_workers", pool=q) >= 1, q
        assert ("hgq_queue_length", frozenset({("queue", q)})) in after, q


def test_failures_skips_retries_and_artifacts_are_counted(mon: MonStack, tmp_path: Path) -> None:
    from shared.plan import parse_plan_json
    from shared.run_models import RequestCreate
    from tests.media import png, shapes_image

    before = scrape(mon.port)
    failed = run_plan(mon.client, [diag(0, [], fail="permanent"), diag(1, [0], text="<GENERATED>-0")])
    assert failed.status == "failed"
    retried = run_plan(mon.client, [diag(0, [], fail="transient", key=uuid.uuid4().hex)])
    assert retried.status == "succeeded"
    _, img = shapes_image()
    path = tmp_path / "shapes.png"
    path.write_bytes(png(img))
    uploads = mon.client.uploads_for([path])
    rid = mon.client.submit(RequestCreate(text="make it gray", uploads=uploads, plan=parse_plan_json(
        [{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "shapes.png", "style": "gray"}}])))
    art = wait_final(mon.client, rid)
    assert art.status == "succeeded", art.model_dump_json(indent=1)
    after = wait_metric(mon.port, "hgq_requests_total", val(before, "hgq_requests_total") + 3)

    def d(metric: str, /, **labels: str) -> float:
        return val(after, metric, **labels) - val(before, metric, **labels)

    assert d("hgq_requests_total", status="failed") == 1
    assert d("hgq_requests_total", status="succeeded") == 2
    assert d("hgq_task_failures_total", task="diag-text", model="hgq/diag-text") == 1
    assert d("hgq_tasks_skipped_total", task="diag-text") == 1
    assert d("hgq_tasks_total", task="diag-text", status="skipped") == 1
    assert d("hgq_task_runtime_seconds_count", task="diag-text", status="failed") == 1
    assert d("hgq_task_retries_total", queue="text") >= 1
    assert d("hgq_celery_task_seconds_count", name="hgq.text.node", state="RETRY") >= 1
    assert d("hgq_artifacts_stored_total", kind="image") == 1
    assert d("hgq_artifact_bytes_total", kind="image") == art.artifacts[0].size > 0
    assert d("hgq_task_runtime_seconds_count", task="image-to-image", model="hgq/pillow-image-filters") == 1


def test_api_exposition_and_http_middleware() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route
    from starlette.testclient import TestClient

    from monitoring import metrics

    body, ctype = metrics.exposition()
    assert ctype.startswith("text/plain") and b"# TYPE hgq_requests_total counter" in body

    async def hello(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/v1/hello/{name}", hello), Mount("/metrics", app=metrics.asgi_app())])
    app.add_middleware(metrics.MetricsMiddleware)
    with TestClient(app) as http:
        assert http.get("/v1/hello/x").status_code == 200
        assert http.get("/v1/hello/y").status_code == 200
        res = http.get("/metrics/")
    assert res.status_code == 200
    assert 'hgq_http_requests_total{code="200",method="GET",route="/v1/hello/{name}"} 2.0' in res.text


# --- logs --------------------------------------------------------------------------------------------
def test_worker_logs_are_json_with_request_and_task_ids(mon: MonStack) -> None:
    view = run_plan(mon.client, [diag(0, [], 0.1), diag(1, [0], 0.1, pool="vision", text="<GENERATED>-0")])
    assert view.status == "succeeded"
    rid = view.request_id
    time.sleep(0.5)
    lines = [ln for f in sorted(mon.logs.glob("worker-*.log")) for ln in f.read_text(errors="replace").splitlines()
             if rid in ln]
    assert len(lines) >= 6, lines  # received + succeeded for plan, 2 nodes, respond
    tasks = set()
    for ln in lines:
        rec = json.loads(ln)  # every line that mentions the request is one JSON object
        assert rec["request_id"] == rid, rec
        assert rec["task_id"] and rec["task_id"].startswith(f"{rid}."), rec
        assert rec["pool"] in ("text", "vision", "audio", "llm")
        tasks.add(rec["task_id"])
    assert {f"{rid}.plan", f"{rid}.0", f"{rid}.1", f"{rid}.respond"} <= tasks


def test_log_filter_reads_the_current_celery_task() -> None:
    from celery import Celery

    from monitoring.logging import bind_request_id, setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buf = io.StringIO()
    try:
        setup_logging("INFO", fmt="json", stream=buf)
        app = Celery("t", set_as_current=False)

        @app.task(name="t.log")
        def log_something() -> None:
            logging.getLogger("hgq.test").info("inside %s", "task", extra={"node": 3})

        log_something.apply(task_id="abc123.3")
        with bind_request_id("req-9"):
            logging.getLogger("hgq.test").warning("api side")
        logging.getLogger("hgq.test").info("nothing bound")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    recs = [json.loads(x) for x in buf.getvalue().splitlines()]
    inside = next(r for r in recs if r["msg"] == "inside task")
    assert inside["request_id"] == "abc123" and inside["task_id"] == "abc123.3" and inside["node"] == 3
    assert inside["task_name"] == "t.log" and inside["level"] == "INFO"
    api = next(r for r in recs if r["msg"] == "api side")
    assert api["request_id"] == "req-9" and api["task_id"] is None
    assert next(r for r in recs if r["msg"] == "nothing bound")["request_id"] is None


# --- Flower ------------------------------------------------------------------------------------------
def test_flower_refuses_weak_passwords_off_loopback(settings) -> None:  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    from monitoring.flower import flower_command, flower_env
    from shared.errors import ConfigError

    public = settings.model_copy(update={"flower_host": "0.0.0.0"})
    for weak in ("", "admin", "changeme", "short"):
        with pytest.raises(ConfigError, match="HGQ_FLOWER_PASSWORD"):
            flower_command(public.model_copy(update={"flower_password": SecretStr(weak)}))
    strong = public.model_copy(update={"flower_user": "ops", "flower_password": SecretStr("correct-horse-battery")})
    cmd = flower_command(strong)
    assert "--address=0.0.0.0" in cmd and not any("correct-horse" in c for c in cmd)
    assert flower_env(strong, {"PROMETHEUS_MULTIPROC_DIR": "/x"}) == {
        "FLOWER_BASIC_AUTH": "ops:correct-horse-battery"}
    local = settings.model_copy(update={"flower_host": "127.0.0.1"})
    open_env = flower_env(local.model_copy(update={"flower_password": SecretStr("")}), {"FLOWER_BASIC_AUTH": "stale:x"})
    assert "FLOWER_BASIC_AUTH" not in open_env  # loopback, no password: local development
    admin = local.model_copy(update={"flower_user": "admin", "flower_password": SecretStr("admin")})
    assert flower_env(admin, {})["FLOWER_BASIC_AUTH"] == "admin:admin"


def test_flower_lists_every_pool_and_the_tasks_of_a_run(mon: MonStack) -> None:
    from pydantic import SecretStr

    from monitoring.flower import FLOWER_METRICS, flower_command, flower_env

    port = _free_port()
    fs = mon.settings.model_copy(update={"flower_host": "127.0.0.1", "flower_port": port, "flower_user": "ops",
                                         "flower_password": SecretStr("a-long-test-password")})
    auth = ("ops", "a-long-test-password")
    log = open(mon.logs / "flower.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(flower_command(fs), cwd=ROOT, env=flower_env(fs, mon.env), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _get(f"{base}/healthcheck")[0] == 200, 30, "flower")
        assert _get(f"{base}/api/workers")[0] == 401
        assert _get(f"{base}/api/workers", auth=("ops", "wrong"))[0] == 401
        hosts: list[str] = []

        def all_pools() -> bool:
            status, body = _get(f"{base}/api/workers?refresh=1", auth=auth)
            hosts[:] = list(json.loads(body)) if status == 200 else []
            return all(any(h.startswith(f"{q}-") for h in hosts) for q in ("text", "vision", "audio", "llm"))

        _wait(all_pools, 30, "flower lists a worker of every pool")
        view = run_plan(mon.client, [diag(0, [], 0.1), diag(1, [0], 0.1, pool="audio", text="<GENERATED>-0")])
        assert view.status == "succeeded"
        rid = view.request_id
        want = {f"{rid}.plan", f"{rid}.0", f"{rid}.1", f"{rid}.respond"}
        seen: dict[str, Any] = {}

        def has_tasks() -> bool:
            status, body = _get(f"{base}/api/tasks?limit=1000", auth=auth)
            seen.clear()
            seen.update({k: v for k, v in json.loads(body).items() if k.startswith(rid)} if status == 200 else {})
            return want <= set(seen) and all(seen[t]["state"] == "SUCCESS" for t in want)

        _wait(has_tasks, 20, f"flower shows the run's tasks {sorted(want)}")
        assert seen[f"{rid}.1"]["name"] == "hgq.audio.node" and seen[f"{rid}.1"]["worker"].startswith("audio-")
        assert seen[f"{rid}.respond"]["worker"].startswith("llm-")
        # Flower's /metrics needs no credentials (hence: never publish Flower's port)
        from prometheus_client.parser import text_string_to_metric_families

        status, body = _get(f"{base}/metrics")
        assert status == 200
        exposed = {s.name for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}
        assert set(FLOWER_METRICS) <= exposed, set(FLOWER_METRICS) - exposed
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- scaling and graceful stop ------------------------------------------------------------------------
def test_two_workers_on_one_queue_share_its_tasks(mon: MonStack) -> None:
    extra, extra_host = mon.spawn_worker("text")
    try:
        assert len(mon.workers("text")) >= 2
        # 4 siblings of 1.5 s, each worker process runs 2 at a time (prefetch 1): both must take some
        plan = [diag(0, [], 0.05)] + [diag(i, [0], 1.5, text="<GENERATED>-0") for i in range(1, 5)]
        view = run_plan(mon.client, plan)
        assert view.status == "succeeded"
        hosts = {view.tasks[str(i)].worker for i in range(1, 5)}
        assert len(hosts) >= 2 and extra_host in hosts, hosts
    finally:
        mon.stop(extra)


def test_sigterm_hands_a_running_task_to_another_worker(mon: MonStack) -> None:
    from monitoring.multiproc import pid_alive
    from shared.plan import parse_plan_json
    from shared.run_models import RequestCreate

    victim, victim_host = mon.spawn_worker("text")
    # (a worker stopped by a cold shutdown stays in the registry until its heartbeat key expires)
    others = [w.hostname for w in mon.workers("text") if w.hostname != victim_host and pid_alive(w.pid)]
    assert others
    control = mon.client.app.control
    control.cancel_consumer("text", destination=others, reply=True, timeout=5)  # only the victim consumes
    try:
        rid = mon.client.submit(RequestCreate(text="long", plan=parse_plan_json([diag(0, [], 8.0)])))
        _wait(lambda: (t := mon.client.view(rid).tasks.get("0")) is not None and t.status == "running", 30,
              "the long task runs")
        assert mon.client.view(rid).tasks["0"].worker == victim_host
    finally:
        control.add_consumer("text", destination=others, reply=True, timeout=5)
    time.sleep(1.0)
    stopped_at = time.monotonic()
    victim.send_signal(signal.SIGTERM)  # soft shutdown: 2 s for the task, then cancelled and handed back
    victim.wait(timeout=SOFT_SHUTDOWN_S + 20)
    assert time.monotonic() - stopped_at < SOFT_SHUTDOWN_S + 15, "the worker waited for the 8 s task"
    view = wait_final(mon.client, rid, 60)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    task = view.tasks["0"]
    assert task.worker in others and task.attempts >= 2, task
    assert task.output is not None and task.output.text == "n0()"


# --- hgq status ----------------------------------------------------------------------------------------
def test_status_report_shows_pools_queues_and_runs_in_flight(mon: MonStack) -> None:
    from monitoring.status import collect_status, status_report
    from shared.plan import parse_plan_json
    from shared.run_models import RequestCreate

    rid = mon.client.submit(RequestCreate(text="slow", plan=parse_plan_json([diag(0, [], 2.0)])))
    _wait(lambda: mon.client.view(rid).status == "running", 20, "run is running")
    st = collect_status(mon.settings)
    assert all(len(st.workers[q]) >= 1 for q in ("text", "vision", "audio", "llm"))
    assert rid in [r.run_id for r in st.in_flight]
    text = status_report(mon.settings)
    assert re.search(r"^text\s+\d+\s+\d+\s+\d+", text, re.M), text
    assert "runs in flight: " in text and rid in text
    view = wait_final(mon.client, rid)
    assert view.status == "succeeded"
    assert rid not in [r.run_id for r in collect_status(mon.settings).in_flight]


def test_status_counts_queued_messages_and_says_when_redis_is_down(settings) -> None:  # type: ignore[no-untyped-def]
    from monitoring.status import redis_queue_length, status_report
    from shared.errors import ConfigError
    from shared.redis_conn import text_redis

    url = settings.redis_url.rsplit("/", 1)[0] + "/2"
    client = text_redis(url)
    client.flushdb()
    client.rpush("audio", "a", "b")
    client.rpush("audio\x06\x163", "c")
    assert redis_queue_length(client, "audio") == 3
    text = status_report(settings.model_copy(update={"redis_url": url}))
    assert re.search(r"^audio\s+0\s+0\s+3\s", text, re.M), text
    assert "WARNING: 3 queued and no live worker" in text
    client.flushdb()
    with pytest.raises(ConfigError, match="not reachable"):
        status_report(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{_free_port()}/0"}))


# --- files: dashboards, scrape config, KEDA ----------------------------------------------------------------
def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def test_dashboard_loads_and_every_query_names_an_exported_metric() -> None:
    from monitoring.flower import FLOWER_METRICS
    from monitoring.metrics import exported_names

    dash = json.loads((MON / "grafana" / "dashboards" / "hgq.json").read_text())
    hgq_names = exported_names()
    panels = [p for p in _panels(dash["panels"]) if p["type"] != "row"]
    assert len(panels) >= 15
    used: set[str] = set()
    for p in panels:
        assert p["datasource"]["uid"] == "hgq-prometheus", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            names = set(re.findall(r"\b((?:hgq|flower)_[a-z0-9_]+)", t["expr"]))
            assert names, f"{p['title']}: {t['expr']}"
            for n in names:
                assert n in hgq_names or n in FLOWER_METRICS, f"{p['title']}: {n} is not exported"
            used |= names
    # every hgq metric family has a panel
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    for n in hgq_names:
        if not n.endswith("_created"):
            assert re.sub(r"_(total|bucket|sum|count)$", "", n) in families, f"no panel shows {n}"
    ds = yaml.safe_load((MON / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "hgq-prometheus"
    prov = yaml.safe_load((MON / "grafana" / "provisioning" / "dashboards" / "hgq.yml").read_text())
    assert prov["providers"][0]["options"]["path"]


def test_prometheus_scrapes_api_workers_and_flower() -> None:
    cfg = yaml.safe_load((MON / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"hgq-api", "hgq-workers", "flower"}
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    sd = jobs["hgq-workers"]["dns_sd_configs"][0]
    assert set(sd["names"]) == {"planner", "worker-text", "worker-vision", "worker-audio", "worker-vision-gpu"}
    assert sd["port"] == 9808


def test_keda_scales_each_queue_on_its_redis_list() -> None:
    from shared.settings import ALL_QUEUES

    docs = list(yaml.safe_load_all((MON / "k8s" / "keda-scaledobjects.yaml").read_text()))
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    assert set(scaled) == {f"hgq-worker-{q}" for q in ALL_QUEUES}
    for q in ALL_QUEUES:
        trig = scaled[f"hgq-worker-{q}"]["spec"]["triggers"][0]
        assert trig["type"] == "redis" and trig["metadata"]["listName"] == q
        assert scaled[f"hgq-worker-{q}"]["spec"]["minReplicaCount"] >= 1  # the registry needs a live worker
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 60


def test_k8s_manifests_deploy_every_pool_the_llm_and_the_api_with_env_probes_and_limits() -> None:
    from shared.settings import ALL_QUEUES

    docs = list(yaml.safe_load_all((MON / "k8s" / "keda-scaledobjects.yaml").read_text()))
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {*(f"hgq-worker-{q}" for q in ALL_QUEUES), "hgq-llm", "hgq-api"}
    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "hgq-redis", name
        assert env["OPENAI_BASE_URL"]["value"].startswith("http://hgq-llm."), name
        assert "livenessProbe" in container, name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and \
            {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        assert container["securityContext"]["runAsNonRoot"] is True, name
        if name.startswith("hgq-worker-"):
            assert container["args"] == ["hgq", "worker", name.removeprefix("hgq-worker-")]
            assert spec["terminationGracePeriodSeconds"] > 60
    assert deployments["hgq-api"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] \
        == "/readyz"
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert services == {"hgq-llm", "hgq-api"}
