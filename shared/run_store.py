"""A run's state in Redis: request, plan, node states, outputs, events, usage.

Workers, the planner, the CLI and the API all read and write runs only through this class.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from shared import dag_lua
from shared.errors import RunNotFound
from shared.keys import RunKeys, run_keys, runs_index_key
from shared.outputs import TaskOutput
from shared.plan import ValidatedPlan
from shared.run_models import NodeInfo, RequestCreate, RunEvent, StageUsage

TERMINAL_NODE = frozenset({"succeeded", "failed", "skipped", "cancelled"})


def _ids(raw: str) -> list[int]:
    data = json.loads(raw)
    return [int(x) for x in data] if isinstance(data, list) else []  # cjson encodes {} for empty


@dataclass(frozen=True)
class Transition:
    """What a DAG transition asks the caller to do next."""

    ready: list[int]  # nodes to publish
    finalize: bool  # publish the response callback


class RunStore:
    def __init__(self, client: redis.Redis, prefix: str, run_id: str, ttl_s: int = 86400):
        self.r = client
        self.prefix = prefix
        self.run_id = run_id
        self.k: RunKeys = run_keys(prefix, run_id)
        self.ttl_s = ttl_s
        self._start = client.register_script(dag_lua.START)
        self._complete = client.register_script(dag_lua.COMPLETE)
        self._cancel = client.register_script(dag_lua.CANCEL)
        self._renew = client.register_script(dag_lua.RENEW)
        self._release = client.register_script(dag_lua.RELEASE)
        self._complete_streaming = client.register_script(dag_lua.COMPLETE_STREAMING)

    # --- creation -------------------------------------------------------------------------
    def create(self, request: RequestCreate) -> bool:
        """Store a new request. False if this id exists already (idempotent submission)."""
        now = time.time()
        if not self.r.hsetnx(self.k.meta, "request", request.model_dump_json()):
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.meta, mapping={"status": "accepted", "created_at": repr(now), "user": request.user})
        pipe.zadd(runs_index_key(self.prefix), {self.run_id: now})
        pipe.xadd(self.k.events, {"data": json.dumps({"type": "accepted", "ts": now})})
        for key in self.k.all():
            pipe.expire(key, self.ttl_s)
        pipe.execute()
        return True

    def exists(self) -> bool:
        return bool(self.r.exists(self.k.meta))

    def request(self) -> RequestCreate:
        raw = self.r.hget(self.k.meta, "request")
        if raw is None:
            raise RunNotFound(f"no run {self.run_id}")
        return RequestCreate.model_validate_json(raw)

    def init_dag(self, plan: ValidatedPlan, selection: dict[int, str]) -> list[int]:
        """Write the plan and node states once; return the nodes to publish (roots, or the
        queued ones on a replay)."""
        if self.r.hexists(self.k.meta, "plan"):
            states = self.r.hgetall(self.k.state)
            return [int(n) for n, s in states.items() if s == "queued"]
        now = time.time()
        roots = plan.roots()
        pipe = self.r.pipeline(transaction=True)
        if plan.nodes:
            pipe.hset(self.k.state, mapping={str(n.id): ("queued" if n.id in roots else "pending") for n in plan.nodes})
            pipe.hset(self.k.waiting, mapping={str(n.id): len(n.deps) for n in plan.nodes})
        pipe.hset(self.k.meta, mapping={
            "plan": plan.model_dump_json(), "left": len(plan.nodes), "status": "running" if plan.nodes else "responding",
            "planned_at": repr(now), "selection": json.dumps({str(k): v for k, v in selection.items()}),
        })
        pipe.xadd(self.k.events, {"data": json.dumps({"type": "planned", "ts": now,
                                                      "plan": [n.public() for n in plan.nodes]})})
        for n in roots:
            pipe.xadd(self.k.events, {"data": json.dumps({"type": "task", "node": n, "status": "queued", "ts": now})})
        for key in self.k.all():
            pipe.expire(key, self.ttl_s)
        pipe.execute()
        return roots

    # --- a plan that streams (planner_service/plan_stream.py) -----------------------------------
    def start_early(self, early: ValidatedPlan, node: int) -> None:
        """A task published while the plan still streams (a root, or a task whose dependencies all
        started early and succeeded): the plan so far holds only the early tasks (`streaming` = 1
        until the whole plan is written); this one is queued."""
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.meta, mapping={"plan": early.model_dump_json(), "streaming": "1"})
        pipe.hset(self.k.state, str(node), "queued")
        pipe.hset(self.k.waiting, str(node), 0)
        pipe.xadd(self.k.events, {"data": json.dumps({"type": "task", "node": node, "status": "queued", "ts": now,
                                                      "early": True, "task": early.node(node).task})})
        for key in self.k.all():
            pipe.expire(key, self.ttl_s)
        pipe.execute()

    def streaming(self) -> bool:
        return self.r.hget(self.k.meta, "streaming") == "1"

    def complete_streaming(self, node: int, outcome: str, extra: dict[str, Any] | None = None,
                           output: TaskOutput | None = None, info: NodeInfo | None = None) -> str:
        """Record an early task's outcome (and output, info) while its plan still streams: 'held'
        (recorded; the final plan is wired to it when written), 'final' (the whole plan is written:
        nothing was recorded, use `complete` with that plan) or 'ended' (the run ended first)."""
        return str(self._complete_streaming(
            keys=[self.k.state, self.k.meta, self.k.events, self.k.lease(node), self.k.outputs, self.k.info],
            args=[node, outcome, repr(time.time()), json.dumps(extra or {}),
                  output.model_dump_json() if output is not None else "",
                  info.model_dump_json() if info is not None else ""]))

    def finalize_streamed(self, plan: ValidatedPlan, selection: dict[int, str], early: set[int],
                          dropped: set[int]) -> Transition:
        """Write the whole plan of a run whose first tasks started while it streamed (`early`). An
        early task may have finished meanwhile (COMPLETE_STREAMING): a task of the final plan waits
        only for dependencies that have not succeeded, the dependents of a failed one are skipped,
        and early tasks the plan no longer has are cancelled (their outputs discarded). Atomic
        against those finishes (WATCH on the node states: a finish in between makes it read again).
        Returns the tasks to publish now, and whether the run is already complete."""
        while True:
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self.k.state)
                    states = {int(n): s for n, s in pipe.hgetall(self.k.state).items()}
                    pipe.multi()
                    step = self._write_final_plan(pipe, plan, selection, early, dropped, states)
                    pipe.execute()
                    return step
                except redis.WatchError:
                    continue

    def _write_final_plan(self, pipe: Any, plan: ValidatedPlan, selection: dict[int, str], early: set[int],
                          dropped: set[int], states: dict[int, str]) -> Transition:
        now = time.time()
        done = {n for n in early if states.get(n) == "succeeded"}
        skipped: dict[int, str] = {}  # node -> why: the early dependency that did not succeed
        for n in sorted(early):
            if states.get(n) in TERMINAL_NODE and n not in done:
                for d in plan.descendants(n):
                    skipped.setdefault(d, f"dependency task {n} {states[n]}")
        new = [n for n in plan.nodes if n.id not in early]
        waiting = {n.id: sum(d not in done for d in n.deps) for n in new if n.id not in skipped}
        ready = [n for n, w in waiting.items() if w == 0]
        if new:
            pipe.hset(self.k.state, mapping={str(n.id): ("skipped" if n.id in skipped else
                                                         "queued" if waiting[n.id] == 0 else "pending") for n in new})
        if waiting:
            pipe.hset(self.k.waiting, mapping={str(n): w for n, w in waiting.items()})
        for node in dropped:
            pipe.hset(self.k.state, str(node), "cancelled")
        if dropped:
            pipe.hdel(self.k.outputs, *[str(n) for n in dropped])
        left = sum(1 for n in plan.nodes if n.id not in skipped and states.get(n.id) not in TERMINAL_NODE)
        pipe.hset(self.k.meta, mapping={
            "plan": plan.model_dump_json(), "left": left, "status": "running", "streaming": "0",
            "planned_at": repr(now), "selection": json.dumps({str(k): v for k, v in selection.items()})})
        pipe.xadd(self.k.events, {"data": json.dumps({"type": "planned", "ts": now,
                                                      "plan": [n.public() for n in plan.nodes]})})
        for n in ready:
            pipe.xadd(self.k.events, {"data": json.dumps({"type": "task", "node": n, "status": "queued", "ts": now})})
        for n, why in sorted(skipped.items()):
            pipe.xadd(self.k.events, {"data": json.dumps({"type": "task", "node": n, "status": "skipped", "ts": now,
                                                          "error": why})})
        for n in dropped:
            pipe.xadd(self.k.events, {"data": json.dumps({"type": "task", "node": n, "status": "cancelled", "ts": now,
                                                          "error": "started early, then left out of the final plan"})})
        for key in self.k.all():
            pipe.expire(key, self.ttl_s)
        return Transition(ready=ready, finalize=left == 0)

    def update_selection(self, plan: ValidatedPlan, selection: dict[int, str]) -> None:
        """The models chosen after the DAG was written (the LLM's choice among close candidates)."""
        self.r.hset(self.k.meta, mapping={"plan": plan.model_dump_json(),
                                          "selection": json.dumps({str(k): v for k, v in selection.items()})})

    def plan(self) -> ValidatedPlan | None:
        raw = self.r.hget(self.k.meta, "plan")
        return ValidatedPlan.model_validate_json(raw) if raw else None

    # --- node transitions -----------------------------------------------------------------
    def start(self, node: int, token: str, lease_s: float, max_attempts: int, extra: dict[str, Any],
              clean_retries: int = 0) -> tuple[str, int]:
        status, n = self._start(
            keys=[self.k.state, self.k.meta, self.k.attempts, self.k.lease(node), self.k.events],
            args=[node, token, int(lease_s * 1000), max_attempts, repr(time.time()), json.dumps(extra), clean_retries],
        )
        return str(status), int(n)

    def renew(self, node: int, token: str, lease_s: float) -> bool:
        return bool(self._renew(keys=[self.k.lease(node)], args=[token, int(lease_s * 1000)]))

    def release(self, node: int, token: str) -> None:
        self._release(keys=[self.k.lease(node)], args=[token])

    def complete(self, plan: ValidatedPlan, node: int, outcome: str, extra: dict[str, Any] | None = None) -> Transition:
        finalize, ready = self._complete(
            keys=[self.k.state, self.k.meta, self.k.waiting, self.k.events, self.k.lease(node)],
            args=[node, outcome, json.dumps([str(s) for s in plan.successors(node)]),
                  json.dumps([str(d) for d in plan.descendants(node)] if outcome != "succeeded" else []),
                  repr(time.time()), json.dumps(extra or {})],
        )
        return Transition(ready=_ids(ready), finalize=bool(int(finalize)))

    def cancel(self) -> Transition:
        finalize, cancelled = self._cancel(keys=[self.k.state, self.k.meta, self.k.events], args=[repr(time.time())])
        if int(finalize) == -1:
            raise RunNotFound(f"no run {self.run_id}")
        return Transition(ready=_ids(cancelled), finalize=bool(int(finalize)))

    def node_states(self) -> dict[int, str]:
        return {int(n): s for n, s in self.r.hgetall(self.k.state).items()}

    def attempts(self) -> dict[int, int]:
        return {int(n): int(a) for n, a in self.r.hgetall(self.k.attempts).items()}

    # --- outputs and node info ------------------------------------------------------------------
    def write_output(self, node: int, output: TaskOutput, info: NodeInfo | None = None) -> bool:
        """Write a node's output once (HSETNX: False when an earlier delivery already wrote it),
        with its final info, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hsetnx(self.k.outputs, str(node), output.model_dump_json())
        if info is not None:
            pipe.hset(self.k.info, str(node), info.model_dump_json())
        return bool(pipe.execute()[0])

    def output(self, node: int) -> TaskOutput | None:
        raw = self.r.hget(self.k.outputs, str(node))
        return TaskOutput.model_validate_json(raw) if raw else None

    def outputs(self) -> dict[int, TaskOutput]:
        return {int(n): TaskOutput.model_validate_json(v) for n, v in self.r.hgetall(self.k.outputs).items()}

    def info(self, node: int) -> NodeInfo:
        raw = self.r.hget(self.k.info, str(node))
        return NodeInfo.model_validate_json(raw) if raw else NodeInfo()

    def infos(self) -> dict[int, NodeInfo]:
        return {int(n): NodeInfo.model_validate_json(v) for n, v in self.r.hgetall(self.k.info).items()}

    def set_info(self, node: int, info: NodeInfo) -> None:
        self.r.hset(self.k.info, str(node), info.model_dump_json())

    # --- meta -------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        meta = self.r.hgetall(self.k.meta)
        if not meta:
            raise RunNotFound(f"no run {self.run_id} (unknown or expired)")
        return meta

    def set_meta(self, **fields: Any) -> None:
        self.r.hset(self.k.meta, mapping={k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})

    def is_cancelled(self) -> bool:
        return self.r.hget(self.k.meta, "cancel") == "1"

    def finish(self, status: str, response: str, error: str | None = None) -> bool:
        """Write the final answer once (HSETNX); only the writer that wins publishes `done`."""
        if not self.r.hsetnx(self.k.meta, "response", response):
            return False
        now = time.time()
        fields: dict[str, str] = {"status": status, "finished_at": repr(now)}
        if error:
            fields["error"] = error
        self.r.hset(self.k.meta, mapping=fields)
        self.event("done", status=status, error=error)
        return True

    def fail_before_plan(self, error: str, llm_failed: bool = False, answer: str | None = None) -> bool:
        """Planning failed: the run ends failed with the reason (and `answer`, when there is a better
        one for the user than the reason); no DAG was created."""
        self.r.hset(self.k.meta, mapping={"left": 0, **({"llm_failed": "plan"} if llm_failed else {})})
        return self.finish("failed", answer or f"Sorry, I could not plan this request: {error}", error)

    # --- events and usage -------------------------------------------------------------------
    def event(self, type_: str, **data: Any) -> str:
        return str(self.r.xadd(self.k.events, {"data": json.dumps({"type": type_, "ts": time.time(), **data})}))

    def events(self, after: str = "0-0", block_ms: int | None = None, count: int = 500) -> list[RunEvent]:
        if block_ms is None:
            rows = self.r.xrange(self.k.events, min=f"({after}" if after != "0-0" else "-", count=count)
        else:
            res = self.r.xread({self.k.events: after}, block=block_ms, count=count)
            rows = res[0][1] if res else []
        out = []
        for eid, fields in rows:
            data = json.loads(fields["data"])
            out.append(RunEvent(id=eid, type=data.pop("type"), data=data))
        return out

    def follow(self, poll_ms: int = 1000) -> Iterator[RunEvent]:
        """Every event from the start until `done` (inclusive)."""
        last = "0-0"
        while True:
            for ev in self.events(after=last, block_ms=poll_ms):
                last = ev.id
                yield ev
                if ev.type == "done":
                    return
            if last == "0-0" and not self.exists():
                raise RunNotFound(f"no run {self.run_id}")

    def add_usage(self, stage: str, prompt_tokens: int, completion_tokens: int, seconds: float) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(self.k.usage, f"{stage}:calls", 1)
        pipe.hincrby(self.k.usage, f"{stage}:prompt_tokens", prompt_tokens)
        pipe.hincrby(self.k.usage, f"{stage}:completion_tokens", completion_tokens)
        pipe.hincrbyfloat(self.k.usage, f"{stage}:seconds", seconds)
        pipe.expire(self.k.usage, self.ttl_s)
        pipe.execute()

    def usage(self) -> dict[str, StageUsage]:
        stages: dict[str, dict[str, float]] = {}
        for field, value in self.r.hgetall(self.k.usage).items():
            stage, counter = field.split(":", 1)
            stages.setdefault(stage, {})[counter] = float(value)
        return {s: StageUsage(**{k: (v if k == "seconds" else int(v)) for k, v in c.items()}) for s, c in stages.items()}
