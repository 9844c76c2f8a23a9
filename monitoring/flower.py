"""Flower for hgq: the command line, its environment, and the password policy.

Basic auth is always on when a password is set. A missing or well-known password is refused
unless Flower binds a loopback address (local development), where Flower then runs without
auth. The credentials travel in FLOWER_BASIC_AUTH (Flower reads FLOWER_* variables), never on
the command line, where `ps` would show them.

Flower serves `/metrics` and `/healthcheck` WITHOUT authentication (flower 2.2): never publish
Flower's port; let Prometheus reach it on an internal network only.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any

from shared.errors import ConfigError

WEAK_PASSWORDS = frozenset({"", "admin", "password", "changeme", "change-me", "flower", "hgq", "secret",
                            "celery", "guest", "test", "123456", "12345678", "qwerty", "letmein"})
MIN_PASSWORD_LEN = 12

#: Flower metrics used by the dashboard (checked against a live Flower in tests/test_monitoring.py).
FLOWER_METRICS = ("flower_events_total", "flower_worker_online", "flower_worker_number_of_currently_executing_tasks",
                  "flower_task_runtime_seconds_bucket")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addrs = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def _password(settings: Any) -> str:
    value = settings.flower_password
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value or "")


def check_auth(settings: Any) -> tuple[str, str] | None:
    """The (user, password) Flower must require, or None for an open loopback-only Flower.
    Raises ConfigError for a missing or weak password on a non-loopback address."""
    host, user, password = settings.flower_host, str(settings.flower_user), _password(settings)
    weak = password.lower() in WEAK_PASSWORDS or len(password) < MIN_PASSWORD_LEN or password == user
    if not is_loopback(host) and weak:
        raise ConfigError(
            f"Flower would listen on {host}, which is not a loopback address, with "
            f"{'no password' if not password else 'a default or weak password'}: set HGQ_FLOWER_PASSWORD "
            f"(at least {MIN_PASSWORD_LEN} characters, not a well-known default) or bind Flower to 127.0.0.1 "
            "(HGQ_FLOWER_HOST)")
    if not password:
        return None
    if not user or ":" in user or "," in user or "," in password:
        raise ConfigError("HGQ_FLOWER_USER must be non-empty without ':' or ','; HGQ_FLOWER_PASSWORD without ','")
    return user, password


def flower_command(settings: Any, python: str | None = None) -> list[str]:
    """`celery -A workers.app flower ...` for these settings (credentials: see `flower_env`).
    Raises ConfigError when the password policy refuses to start."""
    check_auth(settings)
    return [python or sys.executable, "-m", "celery", "-A", "workers.app", "flower",
            f"--address={settings.flower_host}", f"--port={settings.flower_port}",
            "--purge_offline_workers=300", "--inspect_timeout=3000"]


def flower_env(settings: Any, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the Flower process: the credentials, and no multiprocess metrics
    folder (Flower serves its own default registry)."""
    env = dict(os.environ if base is None else base)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    auth = check_auth(settings)
    if auth is None:
        env.pop("FLOWER_BASIC_AUTH", None)
    else:
        env["FLOWER_BASIC_AUTH"] = f"{auth[0]}:{auth[1]}"
    return env


def exec_flower(settings: Any) -> None:  # pragma: no cover - replaces the process (`hgq flower`)
    cmd = flower_command(settings)
    os.execve(cmd[0], cmd, flower_env(settings))
