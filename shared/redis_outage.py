"""Riding out a Redis (broker and state) outage: a stage or node step that loses Redis waits for
it to come back and runs again, instead of failing the run or leaving it unfinished.

Every step that runs through here is idempotent by design (the plan stage re-announces a written
DAG, node starts are leased and outputs written once, the answer is written once), and its
message is still unacknowledged while it waits, so nothing accepted is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from kombu.exceptions import OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: what losing Redis looks like, from redis-py (state) and kombu (publishing to the broker)
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OperationalError)


def wait_for_redis(url: str, deadline: float, interval_s: float = 0.5) -> bool:
    """Poll until Redis answers PING (True) or the deadline passes (False)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return True
            except (redis.RedisError, OSError):
                pass
            time.sleep(interval_s)
        return False
    finally:
        client.close()


def through_outages(step: Callable[[], T], url: str, outage_s: float, what: str) -> T:
    """Run `step`; when Redis is lost during it, wait (up to `outage_s` in all) and run it again."""
    deadline = time.monotonic() + outage_s
    while True:
        try:
            return step()
        except OUTAGE_ERRORS as exc:
            log.warning("%s: Redis lost (%s); waiting up to %.0f s for it to come back", what, exc,
                        max(0.0, deadline - time.monotonic()))
            if not wait_for_redis(url, deadline):
                raise
            log.info("%s: Redis is back; running the step again", what)
