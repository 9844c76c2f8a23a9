"""RabbitMQ as the broker (HGQ_BROKER_URL=amqp://...), Redis keeping the state. The tests own a
rabbitmq-server (its own node, port and data directory) and a redis-server, so they can kill and
restart them: quorum queues are declared, a request runs, a killed worker's node runs again at
once (RabbitMQ redelivers a lost consumer's messages; no visibility timeout), a broker restart
in the middle of a load loses no accepted request and no worker exits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _free_port
from tests.helpers import diag, final_statuses, submit_for
from tests.test_broker_restart import _Redis

pytestmark = pytest.mark.timeout(400)

#: Debian's /usr/sbin/rabbitmq-server only runs as root or rabbitmq (it su's to rabbitmq); the script
#: behind it runs as whoever starts it, with the directories given here.
_SERVER = next((p for p in ("/usr/lib/rabbitmq/bin/rabbitmq-server", shutil.which("rabbitmq-server")) if p and
                os.path.exists(p)), None)


class _Rabbit:
    def __init__(self, workdir: Path):
        self.port = _free_port()
        self.dir = workdir / f"rabbit-{self.port}"
        self.node = f"hgqtest{self.port}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, vhost: str = "") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def start(self) -> None:
        if _SERVER is None:
            pytest.fail("rabbitmq-server is not installed (make setup installs it)")
        (self.dir / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.dir / "log").mkdir(exist_ok=True)
        (self.dir / "plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
        env = {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
               "RABBITMQ_DIST_PORT": str(_free_port()), "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
               "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"), "RABBITMQ_LOG_BASE": str(self.dir / "log"),
               "RABBITMQ_FEATURE_FLAGS_FILE": str(self.dir / "feature_flags"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "plugins"), "HOME": str(self.dir)}
        self.proc = subprocess.Popen([_SERVER], env=env, cwd=self.dir, stdout=(self.dir / "out").open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        from kombu import Connection

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {(self.dir / 'out').read_text()[-2000:]}")
            try:
                with Connection(self.url(), connect_timeout=1) as conn:
                    conn.ensure_connection(max_retries=1)
                return
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.3)
        raise RuntimeError("rabbitmq-server did not start in 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # RabbitMQ stops cleanly on SIGTERM
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Rabbit]:
    server = _Rabbit(tmp_path_factory.mktemp("rabbit"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack_env(rabbit: _Rabbit, fake_llm, hgq_env, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str], _Redis]]:  # type: ignore[no-untyped-def]
    from shared.settings import Settings

    redis_server = _Redis(tmp_path)
    redis_server.start()
    env = {**hgq_env, "REDIS_URL": redis_server.url, "HGQ_BROKER_URL": rabbit.url(), "HGQ_HOME": str(tmp_path / "home"),
           "HGQ_LEASE_S": "2", "HGQ_WORKER_HEARTBEAT_S": "0.5"}
    settings = Settings(redis_url=redis_server.url, broker_url=rabbit.url(), openai_base_url=fake_llm.url,  # type: ignore[call-arg]
                        openai_api_key="k", llm_model="fake-llm", diagnostics=True, preload_models=False,
                        lease_s=2.0, home=tmp_path / "home")
    try:
        yield settings, env, redis_server
    finally:
        redis_server.stop()


def test_quorum_queues_carry_a_request_and_a_killed_worker_s_node_runs_again(stack_env, fake_llm, rabbit,  # type: ignore[no-untyped-def]
                                                                             tmp_path: Path) -> None:
    from kombu import Connection

    from planner_service.client import HgqClient
    from planner_service.publisher import publisher_app
    from planner_service.stack import Stack
    from shared.run_models import RequestCreate
    from tests.helpers import wait_final, wait_running
    from tests.test_worker_loss import _is_parent_of

    settings, env, _ = stack_env
    fake_llm.script("plan", json.dumps({"tasks": [diag(0, [], 4.0, text="slow"), diag(1, [0], 0.1, text="<GENERATED>-0")]}))
    with Stack(settings, say=lambda m: None, log_dir=tmp_path / "logs") as stack:
        stack.env.update(env)
        stack.start_workers(("text", "llm"), concurrency=1)
        stack.start_workers(("text",), concurrency=1)  # a second text worker to take over
        client = HgqClient(settings, publisher_app(settings))
        rid = client.submit(RequestCreate(text="run the slow one"))
        task = wait_running(client, rid, "0", timeout_s=30)
        with Connection(rabbit.url()) as conn:  # the queues in use are quorum queues: a classic re-declare is refused
            for queue in ("text", "llm"):
                channel = conn.channel()
                with pytest.raises(conn.channel_errors, match="x-queue-type"):
                    channel.queue_declare(queue=queue, durable=True, auto_delete=False, arguments={"x-queue-type": "classic"})
        victim = next(p for name, p in stack.procs if name == "worker-text" and _is_parent_of(p.pid, task.pid))
        time.sleep(0.5)
        os.killpg(victim.pid, signal.SIGKILL)
        killed_at = time.time()
        view = wait_final(client, rid, timeout_s=60)
        assert view.status == "succeeded", view.model_dump_json(indent=1)
        again = view.tasks["0"]
        assert again.attempts == 2 and again.worker != task.worker
        took = (again.started_at or 0) - killed_at
        print(f"rabbitmq, whole-worker kill: node 0 ran again on {again.worker} {took:.1f} s later (lease 2 s)")
        assert took < 2 * 2.0 + 3, took
        assert view.tasks["1"].output.text == "n1(n0(slow))"
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("worker-*.log"))
    assert "Failed to bind queue" not in logs  # countdown retries (native delayed delivery) reach every queue


def test_a_rabbitmq_restart_mid_load_loses_no_accepted_request(stack_env, fake_llm, rabbit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from planner_service.api import create_api
    from planner_service.auth import ApiKeys
    from planner_service.stack import Stack
    from shared.redis_conn import text_redis
    from tests.test_api import ThreadServer, api_settings_for_tests

    settings, env, redis_server = stack_env
    plan = json.dumps({"tasks": [diag(0, [], 0.3, text="a"), diag(1, [0], 0.3, text="<GENERATED>-0")]})
    fake_llm.script("plan", *[plan] * 300)
    key, _ = ApiKeys(text_redis(redis_server.url), settings.key_prefix).create("restart")
    with Stack(settings, say=lambda m: None, log_dir=tmp_path / "logs") as stack:
        stack.env.update(env)
        stack.start_workers(concurrency=1)
        api = ThreadServer(create_api(settings, api_settings_for_tests())).start()
        back: list[float] = []
        try:
            with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
                def restart() -> None:
                    time.sleep(3)
                    rabbit.stop()
                    time.sleep(3)
                    rabbit.start()
                    back.append(time.monotonic())

                restarter = threading.Thread(target=restart)
                restarter.start()
                accepted, refused = submit_for(http, 12)
                restarter.join()
                finals = final_statuses(http, accepted, 120)
                drained_s = time.monotonic() - back[0]
                assert finals == {"succeeded": len(accepted)}, finals
                assert all(proc.poll() is None for _, proc in stack.procs), "a worker exited"
                print(f"rabbitmq restart: {len(accepted)} accepted, all succeeded; {refused[503]} refused with 503 "
                      f"during the outage; the last finished {drained_s:.1f} s after the broker was back")
                assert http.post("/v1/requests", json={"text": "and one more afterwards"}).status_code == 202
        finally:
            api.stop()


def test_the_broker_setting_takes_redis_or_amqp_urls_only() -> None:
    from pydantic import ValidationError

    from shared.celery_app import celery_config
    from shared.settings import Settings

    plain = Settings(redis_url="redis://127.0.0.1:6379/3")  # type: ignore[call-arg]
    assert plain.broker == "redis://127.0.0.1:6379/3" and not plain.broker_is_amqp
    assert "task_queues" not in celery_config(plain)  # Redis stays the zero-config broker
    amqp = Settings(broker_url="amqp://u:p@mq:5672/hgq")  # type: ignore[call-arg]
    queues = celery_config(amqp)["task_queues"]
    assert amqp.broker_is_amqp and {q.queue_arguments["x-queue-type"] for q in queues} == {"quorum"}  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="HGQ_BROKER_URL must start with"):
        Settings(broker_url="kafka://somewhere:9092")  # type: ignore[call-arg]
