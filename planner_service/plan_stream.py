"""The streamed plan: tasks start while the LLM is still writing the rest of the plan.

LLMCompiler's idea, on hgq's DAG: the plan's JSON is parsed as it streams (`TaskStream`), and a
task is published as soon as its object is complete, if it can run now and nothing later can
change it: a root (no dependencies, no `<GENERATED>` argument), of a served task type, valid on its
own (files exist and are of the right kind), whose model is certain without the selection call.
The whole plan is still checked and repaired as before once it is complete; then
`remap_onto_early` keeps each early task that the final plan contains unchanged, and gives every
other task of the final plan an id no early task used, so a task that started early but is not
(or no longer) in the plan is dropped (its worker discards its result) and never collides with
the task that replaced it. A worker finishing an early task waits for the final plan before it
records the result (workers/node_runner.py), so dependents are always wired to it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from celery import Celery

from planner_service.selection import rank_models
from shared.dispatch import publish_nodes
from shared.errors import HgqError
from shared.outputs import ArtifactRef
from shared.plan import Node, PlanTask, ValidatedPlan, validate_plan
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


def _same_task(a: Node, b: Node) -> bool:
    return (a.task == b.task and not a.deps and not b.deps and a.params == b.params
            and {k: v.model_dump() for k, v in a.inputs.items()} == {k: v.model_dump() for k, v in b.inputs.items()})


def remap_onto_early(plan: ValidatedPlan, early: ValidatedPlan) -> tuple[ValidatedPlan, set[int], set[int]]:
    """The final plan with ids that agree with the early tasks: (plan, early ids kept, early ids
    dropped). A final task equal to an early one takes its id; every other task gets an id no early
    task has, with its dependencies and `<GENERATED>-N` references renumbered to match."""
    mapping: dict[int, int] = {}
    kept: set[int] = set()
    for node in plan.nodes:
        match = next((e for e in early.nodes if e.id not in kept and _same_task(node, e)), None)
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


class EarlyStarts:
    """Publishes the tasks of a streaming plan that can start before the plan is complete."""

    def __init__(self, app: Celery, run: RunStore, request: str, uploads: Mapping[str, ArtifactRef],
                 available: set[str], served: dict[str, list[ServedModel]], max_fallbacks: int,
                 already: ValidatedPlan | None = None, routes: Mapping[str, str] | None = None):
        self.app, self.run, self.request = app, run, request
        self.uploads, self.available, self.served, self.max_fallbacks = uploads, available, served, max_fallbacks
        self.routes = dict(routes or {})
        self.plan = already if already is not None else ValidatedPlan(nodes=[], routes=self.routes)
        self.reasons: dict[int, str] = {}
        self.stream = TaskStream()

    def on_delta(self, piece: str) -> None:
        for raw in self.stream.feed(piece):
            try:
                self.offer(raw)
            except Exception:  # noqa: BLE001 - an early start is an optimisation, never a failure
                log.exception("early start of a streamed task failed; it will start with the whole plan")

    def offer(self, raw: dict[str, Any]) -> None:
        try:
            task = PlanTask.model_validate(raw)
        except ValueError:
            return
        if any(d != -1 for d in task.dep) or any(isinstance(v, str) and "<GENERATED>" in v for v in task.args.values()):
            return
        if task.id in self.plan.by_id():
            return
        try:
            single = validate_plan([task], self.uploads, self.available)
            reasons, contested = rank_models(self.request, single, self.served, self.max_fallbacks)
        except HgqError:
            return
        if contested or self.run.is_cancelled():
            return
        node = single.nodes[0]
        grown = ValidatedPlan(nodes=[*self.plan.nodes, node], routes=self.routes)
        self.run.start_early(grown, node.id)
        publish_nodes(self.app, self.run.run_id, grown, [node.id])
        # counted as early only once it is surely on its way: one that failed to start or to be
        # published is an ordinary task of the final plan (its state is then written and it is published)
        self.plan = grown
        self.reasons[node.id] = reasons[node.id]


OnDelta = Callable[[str], None]
