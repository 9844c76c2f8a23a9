"""The local stack: Redis (if none is reachable), the LLM (if no endpoint), workers per pool, Flower.

`hgq up` runs it in the foreground; `hgq ask` starts one for the call when no stack runs,
and stops only what it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from shared.errors import ConfigError
from shared.redis_conn import reachable, redacted, text_redis
from shared.registry import live_workers, pools_alive
from shared.settings import ALL_QUEUES, Settings

Say = Callable[[str], None]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise ConfigError(f"{what} exited with status {proc.returncode} before it was ready")
        time.sleep(0.1)
    raise ConfigError(f"{what} was not ready after {timeout_s:.0f}s")


def stack_running(settings: Settings, queues: tuple[str, ...] = ALL_QUEUES) -> bool:
    """True when Redis answers and a live worker serves every queue."""
    if not reachable(settings.redis_url):
        return False
    alive = pools_alive(live_workers(text_redis(settings.redis_url), settings.key_prefix))
    return all(q in alive for q in queues)


@dataclass
class Stack(AbstractContextManager["Stack"]):
    """Processes this hgq process started; `stop` ends them in reverse order."""

    settings: Settings
    say: Say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    log_dir: Path | None = None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _llm_server: object | None = None

    # --- parts --------------------------------------------------------------------------
    def ensure_redis(self, private_ok: bool = True) -> str:
        """The configured Redis, or (when `private_ok`) a private redis-server when it cannot be reached."""
        url = self.settings.redis_url
        if self.settings.broker_is_amqp:
            self._check_amqp_broker()
        if reachable(url):
            self.say(f"redis: using {redacted(url)}")
            return url
        if not private_ok:
            raise ConfigError(f"Redis is not reachable at {redacted(url)} (REDIS_URL): start it, or unset "
                              "REDIS_URL to let hgq start a private, non-durable redis-server")
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(f"Redis is not reachable at {url} and no redis-server binary is installed: "
                              "install Redis (apt-get install redis-server) or set REDIS_URL")
        port = free_port()
        proc = self._spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"])
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: reachable(url), 10, "redis-server", proc)
        self.env["REDIS_URL"] = url
        os.environ["REDIS_URL"] = url
        self.settings = self.settings.model_copy(update={"redis_url": url})
        self.say(f"redis: started a private redis-server at {url} (no persistence: it lives as long as this "
                 "process; set REDIS_URL for a durable Redis)")
        return url

    def _check_amqp_broker(self) -> None:
        from kombu import Connection

        broker = self.settings.broker
        try:
            with Connection(broker, connect_timeout=3) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:  # noqa: BLE001 - any failure to connect means the same to the user
            raise ConfigError(f"the broker is not reachable at {redacted(broker)} (HGQ_BROKER_URL): {exc}") from exc
        self.say(f"broker: RabbitMQ at {redacted(broker)} (quorum queues; Redis keeps runs and state)")

    def ensure_llm(self) -> str:
        if self.settings.openai_base_url:
            self.say(f"llm: using {self.settings.openai_base_url} (model {self.settings.llm_model})")
            return self.settings.openai_base_url
        from shared.local_llm import ensure_local_llm  # heavy: only when no endpoint is configured

        self.say(f"llm: starting the local {self.settings.local_llm} (first start assembles the model file)")
        local = ensure_local_llm(self.settings)
        self._llm_server = local if local.owner else None
        base_url, model = local.base_url, local.model
        for env in (self.env, os.environ):
            env["OPENAI_BASE_URL"] = base_url
            env["HGQ_LLM_MODEL"] = model
            env["HGQ_LLM_RESPONSE_FORMAT"] = "json_object"  # llama.cpp's form of JSON-schema output
            env["HGQ_LLM_SLOTS"] = str(local.slots)  # queue positions: calls beyond the slots wait
        self.settings = self.settings.model_copy(update={"openai_base_url": base_url, "llm_model": model,
                                                         "llm_response_format": "json_object",
                                                         "llm_slots": local.slots})
        self.say(f"llm: local {model} at {base_url} ({local.slots} request(s) at once)")
        return base_url

    def start_workers(self, queues: tuple[str, ...] = ALL_QUEUES, concurrency: int | dict[str, int] | None = None,
                      timeout_s: float = 120, preload_models: bool | None = None,
                      pool_impl: dict[str, str] | None = None, env_of: dict[str, dict[str, str]] | None = None) -> None:
        """One worker per queue (a pool, or POOL.LANE). `concurrency` and `pool_impl` (prefork/threads/solo)
        for every queue or per queue; `env_of`: a queue's own environment variables. `preload_models=False` loads each model on its first task instead of at start (a
        one-call stack: loading every model of every pool would compete with planning)."""
        if self.settings.models_file is not None:  # an invalid file: its problems here, not in a worker log
            from shared.custom_models import load_models_file

            load_models_file(self.settings.models_file)
        env = dict(self.env)
        if preload_models is not None:
            env["HGQ_PRELOAD_MODELS"] = "1" if preload_models else "0"
        started = []
        for queue in queues:  # a pool's queue, or POOL.LANE for a lane's worker
            pool, _, lane = queue.partition(".")
            args = [sys.executable, "-m", "planner_service.cli", "worker", pool, *(["--lane", lane] if lane else [])]
            size = concurrency.get(queue) if isinstance(concurrency, dict) else concurrency
            if size:
                args += ["--concurrency", str(size)]
            if pool_impl and queue in pool_impl:
                args += ["--pool-impl", pool_impl[queue]]
            started.append((queue, self._spawn(f"worker-{queue}", args, env={**env, **(env_of or {}).get(queue, {})})))
        client = text_redis(self.settings.redis_url)
        for queue, proc in started:
            wait_for(partial(self._pool_alive, client, queue), timeout_s, f"worker {queue}", proc)
            self.say(f"worker {queue}: ready (pid {proc.pid})")

    def start_flower(self) -> str:
        from monitoring.flower import flower_command, flower_env

        s = self.settings
        args = flower_command(s)  # ConfigError: no or a weak password off loopback
        proc = self._spawn("flower", args, env=flower_env(s, self.env))
        url = f"http://{s.flower_host}:{s.flower_port}"
        wait_for(lambda: _port_open(s.flower_host, s.flower_port), 30, "flower", proc)
        self.say(f"flower: {url}")
        return url

    def start_metrics(self) -> str | None:
        """The Prometheus exporter of this host's workers on HGQ_METRICS_PORT (None: not configured)."""
        s = self.settings
        if not s.metrics_port:
            return None
        proc = self._spawn("metrics", [sys.executable, "-m", "monitoring.metrics", "--port", str(s.metrics_port),
                                       "--host", s.metrics_host])
        wait_for(lambda: _port_open(s.metrics_host, int(s.metrics_port or 0)), 15, "metrics exporter", proc)
        url = f"http://{s.metrics_host}:{s.metrics_port}/metrics"
        self.say(f"metrics: {url}")
        return url

    def _pool_alive(self, client: Any, queue: str) -> bool:
        return queue in {w.queue for w in live_workers(client, self.settings.key_prefix)}

    # --- lifecycle ----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        out: int | IO[bytes] = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(args, env=self.env if env is None else env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        # Workers, API and Flower first, Redis last: a worker's shutdown still talks to Redis (unacked
        # messages go back to their queue, the registry entry is withdrawn). Workers get their soft
        # shutdown (running tasks finish or are handed back) before SIGKILL.
        soft = min(self.settings.worker_soft_shutdown_s, self.settings.task_soft_time_limit_s)
        procs = list(reversed(self.procs))
        self._terminate([p for p in procs if p[0] != "redis"], 15 + soft)
        self._terminate([p for p in procs if p[0] == "redis"], 15)
        self.procs.clear()
        if self._llm_server is not None:
            from shared.local_llm import shutdown_local_llm

            shutdown_local_llm()
            self._llm_server = None

    @staticmethod
    def _terminate(procs: list[tuple[str, subprocess.Popen]], grace_s: float) -> None:
        for _name, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for _name, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False

