"""The broker's queues: how they are declared (quorum queues on RabbitMQ) and how deep they are.

Redis stays the zero-config broker (one list per queue, plus kombu's priority lists). With
`HGQ_BROKER_URL=amqp://...` every queue is a RabbitMQ quorum queue (replicated, durable; a lost
consumer's unacknowledged messages go back at once) behind a topic exchange of its own name, which
is what Celery's native delayed delivery needs for countdown retries on quorum queues.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from kombu import Connection, Exchange, Queue
from kombu.exceptions import OperationalError

from shared.settings import ALL_QUEUES, Settings

#: kombu's Redis transport keeps one list per priority step besides the queue's own list.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def amqp_queues() -> list[Queue]:
    """Every queue hgq publishes to, as durable quorum queues (each with its own topic exchange)."""
    return [Queue(q, Exchange(q, type="topic", durable=True), routing_key=q, durable=True,
                  queue_arguments={"x-queue-type": "quorum"}) for q in ALL_QUEUES]


def redis_queue_length(client: Any, queue: str) -> int:
    """Messages waiting in a queue of the Redis broker (every priority step's list)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    for step in _PRIORITY_STEPS:
        pipe.llen(f"{queue}{_PRIORITY_SEP}{step}")
    return int(sum(pipe.execute()))


class QueueDepths:
    """Messages waiting (not yet delivered to a worker) per queue, on whichever broker is configured."""

    def __init__(self, settings: Settings, redis_client: Any):
        self.settings = settings
        self.redis = redis_client
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    def length(self, queue: str) -> int:
        if not self.settings.broker_is_amqp:
            return redis_queue_length(self.redis, queue)
        with self._lock:
            try:
                return self._amqp_length(queue)
            except Exception as exc:
                self.close()  # a dead connection is rebuilt on the next call
                if isinstance(exc, OSError | OperationalError) or type(exc).__module__.startswith("amqp"):
                    raise OperationalError(f"the broker is not reachable: {exc}") from exc  # API: 503
                raise

    def _amqp_length(self, queue: str) -> int:
        if self._conn is None:
            self._conn = Connection(self.settings.broker, connect_timeout=3)
        channel = self._conn.channel()
        try:
            _, messages, _ = channel.queue_declare(queue=queue, passive=True)
            return int(messages)
        except self._conn.channel_errors:  # not declared yet (no worker has consumed it): nothing waits
            return 0
        finally:
            with contextlib.suppress(Exception):  # a passive declare of a missing queue closed it already
                channel.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            finally:
                self._conn = None


def declare_amqp_queues(celery_app: Any) -> None:
    """Declare every queue and its exchange before a worker's consumer starts: Celery binds all
    queues to its delayed-delivery exchange at start, which fails for an exchange not declared
    yet (the first llm worker would otherwise find no 'text' exchange, and the reverse)."""
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
        channel = conn.default_channel
        for queue in amqp_queues():
            queue.bind(channel).declare()
