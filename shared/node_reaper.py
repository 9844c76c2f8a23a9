"""Re-running a node whose worker vanished, within about twice the lease, whatever the broker.

A node stays `running` while its worker renews its lease (`HGQ_LEASE_S`). When a whole worker
dies (main process and children: SIGKILL, OOM, a lost machine), its reserved message comes back
only after the broker's visibility timeout (Redis transport) -- minutes. Every worker main process
runs this reaper every half lease period (one at a time, by a Redis lock): a node that is `running`,
has no live lease, and whose worker is no longer in the registry is published again under its
deterministic task id. Its START then counts a new attempt, and the old message, when the broker
redelivers it, finds the node finished (a replay, no second effect).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from shared.dispatch import publish_nodes
from shared.keys import reaper_lock_key, runs_index_key
from shared.registry import live_workers
from shared.run_store import RunStore

log = logging.getLogger(__name__)
SCAN_RUNS = 2000  # most recent runs looked at per round


def reap_once(app: Any, r: Any, prefix: str, ttl_s: int, lease_s: float,
              suspects: set[tuple[str, int]] | None = None) -> list[tuple[str, int]]:
    """One round; returns the (run, node) pairs published again. With `suspects` (kept by the caller
    between rounds), a node is published only when it looked lost in the previous round too: a
    worker that just came back from a Redis outage gets one lease period to announce itself."""
    now = time.time()
    ids = r.zrevrangebyscore(runs_index_key(prefix), "+inf", now - ttl_s, start=0, num=SCAN_RUNS)
    if not ids:
        return []
    pipe = r.pipeline(transaction=False)
    for run_id in ids:
        pipe.hget(RunStore(r, prefix, run_id, ttl_s).k.meta, "status")
    running = [run_id for run_id, status in zip(ids, pipe.execute(), strict=True) if status == "running"]
    alive = {w.hostname for w in live_workers(r, prefix)} if running else set()
    again: list[tuple[str, int]] = []
    seen_now: set[tuple[str, int]] = set()
    for run_id in running:
        run = RunStore(r, prefix, run_id, ttl_s)
        lost = []
        for node, state in run.node_states().items():
            if state != "running" or r.exists(run.k.lease(node)):
                continue
            info = run.info(node)
            if info.worker in alive or (info.started_at is not None and now - info.started_at < lease_s):
                continue  # its worker lives (a retry's backoff, a lease being renewed), or it just started
            lost.append(node)
        looked_lost = {(run_id, n) for n in lost}
        if suspects is not None:
            lost = [n for n in lost if (run_id, n) in suspects]
            seen_now.update(looked_lost)
        plan = run.plan() if lost else None
        if plan is not None:
            lost = [n for n in lost if n in plan.by_id()]
            for n in lost:  # queued again: a later round does not publish it a second time
                r.hset(run.k.state, str(n), "queued")
            publish_nodes(app, run_id, plan, lost)
            again += [(run_id, n) for n in lost]
    for run_id, node in again:
        log.warning("node %s.%s lost its worker: published again", run_id, node)
    if suspects is not None:
        suspects.clear()
        suspects.update(seen_now - set(again))
    return again


def start_reaper(app: Any, r: Any, prefix: str, ttl_s: int, lease_s: float, stop: threading.Event) -> None:
    """A daemon thread running a round every half lease period, in one worker of the deployment at a
    time (it keeps the lock while it lives; another takes over within 1.5 leases of its end)."""
    suspects: set[tuple[str, int]] = set()
    me = uuid.uuid4().hex
    hold_ms = int(lease_s * 1500)

    def loop() -> None:
        while not stop.wait(lease_s / 2):
            try:  # one reaper at a time: whoever holds the key keeps it while it lives
                key = reaper_lock_key(prefix)
                if r.set(key, me, nx=True, px=hold_ms) or r.get(key) == me:
                    r.pexpire(key, hold_ms)
                    reap_once(app, r, prefix, ttl_s, lease_s, suspects)
            except Exception as exc:  # noqa: BLE001 - Redis may blip; the next round tries again
                log.warning("lost-node reaper round failed: %s", exc)

    threading.Thread(target=loop, name="hgq-reaper", daemon=True).start()
