"""Plans: the wire format the LLM (or a user) writes, and its validation into a runnable DAG.

Wire format (HuggingGPT's, kept compatible)::

    [{"id": 0, "task": "automatic-speech-recognition", "dep": [-1], "args": {"audio": "memo.wav"}},
     {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}}]

An arg is a literal, the name of an uploaded file, or ``<GENERATED>-N`` (task N's output).
Validation rejects every problem at once, before anything is enqueued.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter

from shared.catalog import TASK_TYPES, TaskType
from shared.errors import PlanError
from shared.outputs import ArtifactRef

Scalar = str | int | float | bool
GENERATED = re.compile(r"^\s*<\s*GENERATED\s*>\s*-\s*(\d+)\s*$", re.IGNORECASE)


def generated_ref(value: object) -> int | None:
    """N when the value is ``<GENERATED>-N`` (task N's output), else None."""
    m = GENERATED.match(value) if isinstance(value, str) else None
    return int(m.group(1)) if m else None
MAX_TASKS = 64  # tasks in one plan (an LLM plan has a handful; this bounds what a caller can send)


class PlanTask(BaseModel):
    """One task as written by the LLM or the user."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=0)
    task: str
    dep: list[int] = Field(default_factory=lambda: [-1])
    args: dict[str, Scalar] = Field(default_factory=dict)


PLAN_ADAPTER = TypeAdapter(list[PlanTask])


class LiteralBinding(BaseModel):
    type: Literal["literal"] = "literal"
    value: Scalar


class UploadBinding(BaseModel):
    type: Literal["upload"] = "upload"
    ref: ArtifactRef


class OutputBinding(BaseModel):
    type: Literal["output"] = "output"
    task: int


Binding = Annotated[LiteralBinding | UploadBinding | OutputBinding, Field(discriminator="type")]


class Node(BaseModel):
    """A validated task: deps normalised (references imply deps), args bound to sources."""

    id: int
    task: str
    pool: str
    deps: list[int]
    args: dict[str, Scalar]  # as written, for display
    inputs: dict[str, Binding]  # slot -> where its value comes from
    params: dict[str, Scalar]  # literal parameters
    model: str | None = None  # chosen in the selection stage
    fallbacks: list[str] = Field(default_factory=list)  # next candidates, tried in order when the model fails

    def candidates(self) -> list[str]:
        return [m for m in [self.model, *self.fallbacks] if m]

    def public(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "task": self.task, "dep": self.deps or [-1], "args": self.args,
                                  "model": self.model}
        if self.fallbacks:
            out["fallbacks"] = list(self.fallbacks)
        return out


class ValidatedPlan(BaseModel):
    nodes: list[Node]
    routes: dict[str, str] = Field(default_factory=dict)  # model id -> lane queue (shared/registry.model_routes)

    def queue_of(self, node: Node) -> str:
        """Where the node's task goes: its model's lane queue, else its pool's queue."""
        return self.routes.get(node.model or "", node.pool)
    _index: dict[int, Node] | None = PrivateAttr(None)
    _succ: dict[int, list[int]] | None = PrivateAttr(None)
    _desc: dict[int, list[int]] = PrivateAttr(default_factory=dict)
    _order: list[int] | None = PrivateAttr(None)

    def node(self, node_id: int) -> Node:
        return self.by_id()[node_id]

    def by_id(self) -> dict[int, Node]:
        if self._index is None:
            self._index = {n.id: n for n in self.nodes}
        return self._index

    def successors(self, node_id: int) -> list[int]:
        if self._succ is None:
            succ: dict[int, list[int]] = {n.id: [] for n in self.nodes}
            for n in self.nodes:
                for d in n.deps:
                    succ[d].append(n.id)
            self._succ = succ
        return self._succ[node_id]

    def descendants(self, node_id: int) -> list[int]:
        """All nodes reachable from node_id, in topological order (computed once per node)."""
        if node_id not in self._desc:
            seen: set[int] = set()
            stack = [node_id]
            while stack:
                for succ in self.successors(stack.pop()):
                    if succ not in seen:
                        seen.add(succ)
                        stack.append(succ)
            self._desc[node_id] = [n for n in self.topological_order() if n in seen]
        return self._desc[node_id]

    def roots(self) -> list[int]:
        return [n.id for n in self.nodes if not n.deps]

    def topological_order(self) -> list[int]:
        if self._order is None:
            order = _topological_order({n.id: n.deps for n in self.nodes})
            assert order is not None  # validated plans are acyclic
            self._order = order
        return self._order


def parse_plan_json(raw: str | bytes | list[object]) -> list[PlanTask]:
    """Parse the wire format; accepts a JSON list or an object with a "tasks" list."""
    import json

    from pydantic import ValidationError

    from shared import safe_json
    from shared.errors import InputError

    try:
        data = safe_json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        if not isinstance(raw, (str, bytes)):
            safe_json.check_value(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanError([f"plan is not JSON: {exc}"]) from exc
    except InputError as exc:
        raise PlanError([f"plan refused: {exc}"]) from exc
    if isinstance(data, list | dict) and len(data.get("tasks", []) if isinstance(data, dict) else data) > MAX_TASKS:
        raise PlanError([f"a plan has at most {MAX_TASKS} tasks"])
    if isinstance(data, dict) and "tasks" in data:
        data = data["tasks"]
    try:
        return PLAN_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise PlanError([_pydantic_problem(err) for err in exc.errors()]) from exc


def _pydantic_problem(err: Mapping[str, object]) -> str:
    loc_parts = err.get("loc", ())
    loc = ".".join(str(p) for p in loc_parts) if isinstance(loc_parts, tuple | list) else str(loc_parts)
    return f"{loc or 'plan'}: {err.get('msg')}"


def find_upload(value: str, uploads: Mapping[str, ArtifactRef]) -> ArtifactRef | None:
    """An upload named by its name or the path the user gave (basename match)."""
    if value in uploads:
        return uploads[value]
    base = PurePath(value.strip()).name
    return next((ref for name, ref in uploads.items() if PurePath(name).name == base), None)


def validate_plan(
    tasks: Iterable[PlanTask],
    uploads: Mapping[str, ArtifactRef] | None = None,
    available: set[str] | None = None,
) -> ValidatedPlan:
    """Check a plan completely; raise PlanError listing every problem.

    `available` restricts task types to those a live worker serves (None: the whole catalogue).
    """
    uploads = uploads or {}
    tasks = list(tasks)
    problems: list[str] = []
    if len(tasks) > MAX_TASKS:
        raise PlanError([f"a plan has at most {MAX_TASKS} tasks ({len(tasks)} given)"])
    counts = Counter(t.id for t in tasks)
    dupes = sorted(i for i, c in counts.items() if c > 1)
    if dupes:
        problems.append(f"duplicate task ids {dupes}")
    by_id = {t.id: t for t in tasks}

    nodes: list[Node] = []
    for t in tasks:
        where = f"task {t.id} ({t.task})"
        spec = TASK_TYPES.get(t.task)
        if spec is None:
            problems.append(f"task {t.id}: unknown task type '{t.task}'")
            continue
        if available is not None and t.task not in available:
            problems.append(f"{where}: no live worker serves this task type")
            continue
        deps: set[int] = set()
        for d in t.dep:
            if d == -1:
                continue
            if d == t.id:
                problems.append(f"{where}: depends on itself")
            elif d not in by_id:
                problems.append(f"{where}: depends on missing task {d}")
            else:
                deps.add(d)
        inputs, params = _bind_args(t, spec, by_id, uploads, deps, problems)
        nodes.append(Node(id=t.id, task=t.task, pool=spec.pool, deps=sorted(deps), args=dict(t.args),
                          inputs=inputs, params=params))

    if not problems and _topological_order({n.id: n.deps for n in nodes}) is None:
        problems.append("the dependencies form a cycle")
    if problems:
        raise PlanError(problems)
    return ValidatedPlan(nodes=nodes)


def _bind_args(
    t: PlanTask,
    spec: TaskType,
    by_id: Mapping[int, PlanTask],
    uploads: Mapping[str, ArtifactRef],
    deps: set[int],
    problems: list[str],
) -> tuple[dict[str, Binding], dict[str, Scalar]]:
    where = f"task {t.id} ({t.task})"
    inputs: dict[str, Binding] = {}
    params: dict[str, Scalar] = {}
    for name, value in t.args.items():
        if name in spec.params:
            params[name] = value
            continue
        slot = spec.inputs.get(name)
        if slot is None:
            expected = ", ".join([*spec.inputs, *spec.params])
            problems.append(f"{where}: unknown arg '{name}' (expected {expected})")
            continue
        ref = GENERATED.match(value) if isinstance(value, str) else None
        if ref and len(ref.group(1)) > 9:
            problems.append(f"{where}: arg '{name}' references task {ref.group(1)[:12]}..., which cannot exist")
            continue
        if ref:
            src = int(ref.group(1))
            if src == t.id:
                problems.append(f"{where}: arg '{name}' references its own output")
            elif src not in by_id:
                problems.append(f"{where}: arg '{name}' references missing task {src}")
            else:
                producer = TASK_TYPES.get(by_id[src].task)
                if producer is not None and slot.kind not in producer.produces:
                    problems.append(
                        f"{where}: arg '{name}' needs {slot.kind} but task {src} ({producer.name}) "
                        f"produces {'+'.join(sorted(producer.produces))}"
                    )
                deps.add(src)  # a reference is a dependency, whatever `dep` says
                inputs[name] = OutputBinding(task=src)
            continue
        if slot.kind == "text":
            inputs[name] = LiteralBinding(value=value)
            continue
        upload = find_upload(str(value), uploads)
        if upload is None:
            names = ", ".join(uploads) or "none"
            problems.append(f"{where}: arg '{name}' needs an {slot.kind} but '{value}' is neither an uploaded "
                            f"file (uploads: {names}) nor <GENERATED>-N")
        elif upload.kind != slot.kind:
            problems.append(f"{where}: arg '{name}' needs an {slot.kind} but '{value}' is {upload.mime}")
        else:
            inputs[name] = UploadBinding(ref=upload)
    for name, slot in spec.inputs.items():
        if slot.required and name not in inputs and name not in t.args:
            problems.append(f"{where}: missing required arg '{name}' ({slot.kind})")
    return inputs, params


def _topological_order(deps: Mapping[int, list[int]]) -> list[int] | None:
    """Kahn's algorithm (smallest id first among ready nodes); None when there is a cycle."""
    import heapq

    waiting = {n: len(set(d)) for n, d in deps.items()}
    succ: dict[int, list[int]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in set(ds):
            succ.setdefault(d, []).append(n)
    ready = [n for n, w in waiting.items() if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for m in succ.get(n, []):
            waiting[m] -= 1
            if waiting[m] == 0:
                heapq.heappush(ready, m)
    return order if len(order) == len(deps) else None
