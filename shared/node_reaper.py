"""Re-running a node whose worker vanished, within about twice the lease, whatever the broker.

A node stays `running` while its worker renews its lease (`HGQ_LEASE_S`). When a whole worker
dies (main process and children: SIGKILL, OOM, a lost machine), its reserved message comes back
only after the broker's visibility timeout (Redis transport) -- minutes. Every worker main process
runs this reaper each lease period (one at a time, by a Redis lock): a node that is `running`,
has no live lease, and whose worker is no longer in the registry is published again under its
deterministic task id. Its START then counts a new attempt, and the old message, when the broker
redelivers it, finds the node finished (a replay, no second effect).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from shared.dispatch import publish_nodes
from shared.keys import reaper_lock_key, runs_index_key
from shared.registry import live_workers
from shared.run_store import RunStore

log = logging.getLogger(__name__)
SCAN_RUNS = 2000  # most recent runs looked at per round


def reap_once(app: Any, r: Any, prefix: str, ttl_s: int, lease_s: float) -> list[tuple[str, int]]:
    """One round; returns the (run, node) pairs published again."""
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
        plan = run.plan() if lost else None
        if plan is not None:
            lost = [n for n in lost if n in plan.by_id()]
            publish_nodes(app, run_id, plan, lost)
            again += [(run_id, n) for n in lost]
    for run_id, node in again:
        log.warning("node %s.%s lost its worker: published again", run_id, node)
    return again


def start_reaper(app: Any, r: Any, prefix: str, ttl_s: int, lease_s: float, stop: threading.Event) -> None:
    """A daemon thread running a round every lease period, in one worker of the deployment at a time."""
    def loop() -> None:
        while not stop.wait(lease_s):
            try:
                if r.set(reaper_lock_key(prefix), "1", nx=True, px=int(lease_s * 900)):
                    reap_once(app, r, prefix, ttl_s, lease_s)
            except Exception as exc:  # noqa: BLE001 - Redis may blip; the next round tries again
                log.warning("lost-node reaper round failed: %s", exc)

    threading.Thread(target=loop, name="hgq-reaper", daemon=True).start()
