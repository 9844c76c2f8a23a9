"""The LLM's backlog: every call not yet answered, in one sorted set (call id -> sent at).

A call's place in it says how many requests are ahead of it at the endpoint (beyond the
endpoint's parallel slots), which runs show as progress ("planning, 2 requests ahead"). Its
size, plus the plan/respond messages still waiting in the `llm` queue, is the backlog that
`hgq status` and `hgq_llm_backlog` show and that the API refuses work past
(HGQ_LLM_MAX_BACKLOG). A call whose process died is dropped once it is older than the longest
stage deadline.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from shared.keys import llm_calls_key


class LLMBacklog:
    def __init__(self, r: Any, prefix: str, slots: int, stale_s: float):
        self.r = r
        self.key = llm_calls_key(prefix)
        self.slots = max(0, slots)  # 0: the endpoint's parallelism is unknown (no queue position)
        self.stale_s = stale_s

    @classmethod
    def from_settings(cls, r: Any, settings: Any) -> LLMBacklog:
        """The backlog as every reader and writer sees it: a call is stale once it is older than the
        longest stage deadline (plus a minute)."""
        stale_s = max([settings.llm_timeout_s, *settings.llm_stage_timeouts.values()]) + 60
        return cls(r, settings.key_prefix, settings.llm_slots, stale_s)

    def enter(self) -> str:
        call_id = uuid.uuid4().hex
        self.r.zadd(self.key, {call_id: time.time()})
        return call_id

    def leave(self, call_id: str) -> None:
        with contextlib.suppress(Exception):  # never fail a call over its bookkeeping
            self.r.zrem(self.key, call_id)

    def _purge(self) -> None:
        self.r.zremrangebyscore(self.key, "-inf", time.time() - self.stale_s)

    def ahead(self, call_id: str) -> int | None:
        """Calls the endpoint serves before this one starts (None: unknown)."""
        if not self.slots:
            return None
        self._purge()
        rank = self.r.zrank(self.key, call_id)
        return None if rank is None else max(0, int(rank) - self.slots + 1)

    def in_flight(self) -> int:
        self._purge()
        return int(self.r.zcard(self.key))

