"""The streamed plan: tasks start while the LLM is still writing the rest of the plan.

LLMCompiler's idea, on hgq's DAG: the plan's JSON is parsed as it streams (`TaskStream`), and a
task is published as soon as its object is complete, if it can run now and nothing later can
change it: of a served task type, valid with the tasks that started before it (files exist and are
of the right kind), whose model is certain without the selection call, and either a root (no
dependencies, no `<GENERATED>` argument) or a task whose dependencies all started early and have
succeeded (checked again as later pieces arrive, so a chain's second task starts as soon as the
first is done, not at the plan's last token). A worker finishing an early task records its result
at once (RunStore.complete_streaming). The whole plan is still checked and repaired as before once
it is complete; then `remap_onto_early` keeps each early task that the final plan contains
unchanged (same type, arguments and early dependencies), and gives every other task of the final
plan an id no early task used, so a task that started early but is not (or no longer) in the plan
is dropped (its output discarded) and never collides with the task that replaced it;
RunStore.finalize_streamed wires the final plan to what the early tasks did.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from celery import Celery

from planner_service.selection import rank_models
from shared.dispatch import publish_nodes
from shared.errors import HgqError
from shared.outputs import ArtifactRef
from shared.plan import GENERATED, Node, PlanTask, ValidatedPlan, validate_plan
from shared.registry import ServedModel
from shared.run_store import RunStore

log = logging.getLogger(__name__)


class TaskStream:
    """Feed the plan's text piece by piece; each complete object of its task list comes out once.
    Accepts `{"tasks": [...]}` and a bare `[...]`."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._pos = 0
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._array_depth: int | None = None
        self._start: int | None = None
        self._buffer = ""

    def feed(self, piece: str) -> list[dict[str, Any]]:
        self._buffer += piece
        out: list[dict[str, Any]] = []
        text = self._buffer
        for i in range(self._pos, len(text)):
            ch = text[i]
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
                continue
            if ch == '"':
                self._in_string = True
            elif ch in "[{":
                if ch == "[" and self._array_depth is None and self._depth <= 1:
                    self._array_depth = self._depth + 1
                elif ch == "{" and self._array_depth is not None and self._depth == self._array_depth:
                    self._start = i
                self._depth += 1
            elif ch in "]}":
                self._depth -= 1
                if ch == "}" and self._start is not None and self._depth == self._array_depth:
                    try:
                        value = json.loads(text[self._start:i + 1])
                    except ValueError:
                        value = None
                    if isinstance(value, dict):
                        out.append(value)
                    self._start = None
        self._pos = len(text)
        return out


def _same_task(a: Node, b: Node, mapping: Mapping[int, int]) -> bool:
    """Final task `a` is early task `b`: same type and parameters, and the same inputs and
    dependencies once `a`'s are read through `mapping` (final id -> early id)."""
    if a.task != b.task or a.params != b.params or sorted(mapping[d] for d in a.deps) != sorted(b.deps):
        return False
    inputs = {slot: (v.model_copy(update={"task": mapping[v.task]}) if v.type == "output" else v).model_dump()
              for slot, v in a.inputs.items()}
    return inputs == {slot: v.model_dump() for slot, v in b.inputs.items()}


def remap_onto_early(plan: ValidatedPlan, early: ValidatedPlan) -> tuple[ValidatedPlan, set[int], set[int]]:
    """The final plan with ids that agree with the early tasks: (plan, early ids kept, early ids
    dropped). A final task equal to an early one (its dependencies matched first, in topological
    order) takes its id; every other task gets an id no early task has, with its dependencies and
    `<GENERATED>-N` references renumbered to match."""
    mapping: dict[int, int] = {}
    kept: set[int] = set()
    by_id = plan.by_id()
    for node_id in plan.topological_order():
        node = by_id[node_id]
        if any(d not in mapping for d in node.deps):
            continue
        match = next((e for e in early.nodes if e.id not in kept and _same_task(node, e, mapping)), None)
        if match is not None:
            mapping[node.id] = match.id
            kept.add(match.id)
    taken = {n.id for n in early.nodes}
    rest = [n for n in plan.nodes if n.id not in mapping]
    for node in rest:  # keep its own id where no early task has it
        if node.id not in taken:
            mapping[node.id] = node.id
            taken.add(node.id)
    fresh = 0
    for node in rest:
        if node.id in mapping:
            continue
        while fresh in taken:
            fresh += 1
        mapping[node.id] = fresh
        taken.add(fresh)
    if all(k == v for k, v in mapping.items()):
        return plan, kept, {n.id for n in early.nodes} - kept
    nodes = []
    for node in plan.nodes:
        inputs = {slot: (b.model_copy(update={"task": mapping[b.task]}) if b.type == "output" else b)
                  for slot, b in node.inputs.items()}
        args = {k: _renumber(v, mapping) for k, v in node.args.items()}
        nodes.append(node.model_copy(update={"id": mapping[node.id], "deps": [mapping[d] for d in node.deps],
                                             "inputs": inputs, "args": args}))
    return ValidatedPlan(nodes=nodes, routes=plan.routes), kept, {n.id for n in early.nodes} - kept


def _renumber(value: Any, mapping: dict[int, int]) -> Any:
    if isinstance(value, str) and value.startswith("<GENERATED>-"):
        try:
            return f"<GENERATED>-{mapping[int(value.split('-', 1)[1])]}"
        except (KeyError, ValueError):
            return value
    return value


def _depends_on(task: PlanTask) -> set[int]:
    """The tasks `task` reads from: its `dep` list and its `<GENERATED>-N` arguments."""
    deps = {d for d in task.dep if d != -1}
    for value in task.args.values():
        ref = GENERATED.match(value) if isinstance(value, str) else None
        if ref and len(ref.group(1)) <= 9:
            deps.add(int(ref.group(1)))
    return deps


class EarlyStarts:
    """Publishes the tasks of a streaming plan that can start before the plan is complete."""

    POLL_S = 0.02  # how often the states of early tasks that others wait on are read, at most

    def __init__(self, app: Celery, run: RunStore, request: str, uploads: Mapping[str, ArtifactRef],
                 available: set[str], served: dict[str, list[ServedModel]], max_fallbacks: int,
                 already: ValidatedPlan | None = None, routes: Mapping[str, str] | None = None,
                 skip: Callable[[Node], bool] = lambda node: False):
        self.app, self.run, self.request, self.skip = app, run, request, skip
        self.uploads, self.available, self.served, self.max_fallbacks = uploads, available, served, max_fallbacks
        self.routes = dict(routes or {})
        self.plan = already if already is not None else ValidatedPlan(nodes=[], routes=self.routes)
        self.reasons: dict[int, str] = {}
        self.stream = TaskStream()
        self._tasks: dict[int, PlanTask] = {n.id: PlanTask(id=n.id, task=n.task, dep=n.deps or [-1], args=n.args)
                                            for n in self.plan.nodes}
        self._waiting: list[PlanTask] = []  # complete tasks whose early dependencies have not finished yet
        self._polled = 0.0

    def on_delta(self, piece: str) -> None:
        steps: list[Callable[[], None]] = [functools.partial(self.offer, raw) for raw in self.stream.feed(piece)]
        if self._waiting and time.monotonic() - self._polled >= self.POLL_S:
            steps.append(self._poll)
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - an early start is an optimisation, never a failure
                log.exception("early start of a streamed task failed; it will start with the whole plan")

    def offer(self, raw: dict[str, Any]) -> None:
        try:
            task = PlanTask.model_validate(raw)
        except ValueError:
            return
        deps = _depends_on(task)
        if task.id in self._tasks or task.id in deps or not deps <= set(self._tasks):
            return  # a dependency not (yet) started early: the task starts with the whole plan
        if deps:
            self._waiting.append(task)
            self._poll()
        else:
            self._start(task)

    def _poll(self) -> None:
        """Start the waiting tasks whose early dependencies have all succeeded; forget those with
        one that failed (the final plan skips them)."""
        self._polled = time.monotonic()
        states = self.run.node_states()
        still: list[PlanTask] = []
        for task in self._waiting:
            outcome = {states.get(d) for d in _depends_on(task)}
            if outcome == {"succeeded"}:
                self._start(task)
            elif not outcome & {"failed", "skipped", "cancelled"}:
                still.append(task)
        self._waiting = still

    def _start(self, task: PlanTask) -> None:
        try:
            single = validate_plan([*self._tasks.values(), task], self.uploads, self.available)
            node = single.node(task.id)  # (rank_models sets its model)
            reasons, contested = rank_models(self.request, ValidatedPlan(nodes=[node]), self.served,
                                             self.max_fallbacks)
        except HgqError:
            return
        if contested or self.skip(node) or self.run.is_cancelled():
            return
        grown = ValidatedPlan(nodes=[*self.plan.nodes, node], routes=self.routes)
        self.run.start_early(grown, node.id)
        publish_nodes(self.app, self.run.run_id, grown, [node.id])
        # counted as early only once it is surely on its way: one that failed to start or to be
        # published is an ordinary task of the final plan (its state is then written and it is published)
        self.plan = grown
        self._tasks[task.id] = task
        self.reasons[node.id] = reasons[node.id]


OnDelta = Callable[[str], None]
