"""Turn a node's bindings into the values an expert consumes (text, or media bytes)."""

from __future__ import annotations

from shared.artifacts import ArtifactStore
from shared.catalog import TASK_TYPES
from shared.errors import ExpertError
from shared.plan import LiteralBinding, Node, OutputBinding, UploadBinding
from shared.run_store import RunStore
from workers.expert import InputValue, Media


def resolve_inputs(node: Node, run: RunStore, artifacts: ArtifactStore) -> dict[str, InputValue]:
    spec = TASK_TYPES[node.task]
    values: dict[str, InputValue] = {}
    for slot_name, binding in node.inputs.items():
        kind = spec.inputs[slot_name].kind
        if isinstance(binding, LiteralBinding):
            values[slot_name] = str(binding.value)
        elif isinstance(binding, UploadBinding):
            values[slot_name] = Media(artifacts.get(binding.ref.id), binding.ref.mime, binding.ref.name)
        elif isinstance(binding, OutputBinding):
            output = run.output(binding.task)
            if output is None:
                raise ExpertError(f"output of task {binding.task} is missing")
            if kind == "text":
                text = output.as_text()
                if text is None:
                    raise ExpertError(f"task {binding.task} produced no text for arg '{slot_name}'")
                values[slot_name] = text
            else:
                ref = output.artifact(kind)
                if ref is None:
                    raise ExpertError(f"task {binding.task} produced no {kind} for arg '{slot_name}'")
                values[slot_name] = Media(artifacts.get(ref.id), ref.mime, ref.name)
    return values


def empty_upstream_text(node: Node, values: dict[str, InputValue]) -> str | None:
    """The first text input that an earlier task produced empty (a clip with no speech, an image
    with no text), if any: such a node has nothing to work on, which is a result, not a failure."""
    for slot_name, binding in node.inputs.items():
        value = values.get(slot_name)
        if isinstance(binding, OutputBinding) and isinstance(value, str) and not value.strip():
            return slot_name
    return None
