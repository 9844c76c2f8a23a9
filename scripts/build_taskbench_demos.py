"""Build planner_service/data/taskbench_demos.jsonl: planner demonstrations from TaskBench's
development split (its own requests and ground-truth plans, converted to hgq's plan format).

    python scripts/build_taskbench_demos.py DEV_JSONL   (TaskBench's Hugging Face dev split, hgq eval format)

Only two of every three records go into the bank: the records at lines 2, 5, 8, ... (every third
starting at the second, "fold B") are kept out, so that `hgq eval plans` on the split still scores
requests no demonstration was made from (it skips the bank's records and says how many). A record
is converted only when every ground-truth argument finds its input slot by kind (a file by its
extension, `<node-j>` by what task j produces, else text), its links are the links its arguments
make, and the result is a valid hgq plan: a demonstration teaches the format as well as the choice.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner_service.eval_cases import _media_kind, fake_uploads, parse_case  # noqa: E402
from shared.catalog import TASK_TYPES  # noqa: E402
from shared.errors import PlanError  # noqa: E402
from shared.plan import parse_plan_json, validate_plan  # noqa: E402

OUT = ROOT / "planner_service" / "data" / "taskbench_demos.jsonl"
HELD_OUT_FOLD = 1  # line index % 3 == 1 (0-based): scored by `hgq eval plans`, never a demonstration
_REF = re.compile(r"^\s*<\s*node-(\d+)\s*>\s*$", re.IGNORECASE)
_LANGUAGES = ("English", "French", "Spanish", "German", "Italian", "Portuguese", "Chinese", "Japanese",
              "Russian", "Dutch", "Arabic", "Korean", "Hindi")
_TARGET = re.compile(r"\b(?:into|to|in)\s+(" + "|".join(_LANGUAGES) + r")\b", re.IGNORECASE)
_QUESTION = re.compile(r"\?\s*$|^\s*(what|who|whom|which|when|where|why|how|is|are|does|do|can)\b", re.IGNORECASE)


def _kinds(value: str, tasks: list[str]) -> tuple[set[str], int | None]:
    m = _REF.match(value)
    if m:
        j = int(m.group(1))
        spec = TASK_TYPES.get(tasks[j]) if j < len(tasks) else None
        return (set(spec.produces) if spec else set()), j
    kind = _media_kind(value)
    return {kind or "text"}, None


def _convert_node(i: int, task: str, arguments: list[Any], tasks: list[str], request: str) -> dict[str, Any] | None:
    spec = TASK_TYPES.get(task)
    if spec is None:
        return None
    values = [str(a) for a in arguments if isinstance(a, str) and a.strip()]
    if task == "question-answering" and len(values) == 2 and _QUESTION.search(values[0]) and not _QUESTION.search(values[1]):
        values.reverse()  # TaskBench writes the question first as often as the context
    args: dict[str, str] = {}
    deps: list[int] = []
    unused = list(values)
    for slot_name, slot in spec.inputs.items():
        for value in unused:
            kinds, ref = _kinds(value, tasks)
            if slot.kind in kinds:
                args[slot_name] = f"<GENERATED>-{ref}" if ref is not None else value
                if ref is not None:
                    deps.append(ref)
                unused.remove(value)
                break
        else:
            if slot.required:
                return None
    if any(_REF.match(v) for v in unused):
        return None  # an output the ground truth passes on has no slot here: the links would be lost
    if task == "translation":  # the request's last "into/to X", else a language among the extra arguments
        named = [m.title() for m in _TARGET.findall(request)] or [v.title() for v in unused if v.title() in _LANGUAGES]
        if named and named[-1] != "English":
            args["target"] = named[-1]
    return {"id": i, "task": task, "dep": sorted(set(deps)) or [-1], "args": args}


def convert(obj: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """One TaskBench record as (request with its files, hgq plan), or None when it does not convert."""
    try:
        case = parse_case(obj)
    except (ValueError, KeyError, TypeError):
        return None
    tasks = [n.task for n in case.nodes]
    plan = []
    for i, node in enumerate(case.nodes):
        raw = obj["task_nodes"][i]
        converted = _convert_node(i, node.task, list(raw.get("arguments") or []), tasks, case.request)
        if converted is None:
            return None
        plan.append(converted)
    made = sorted((tasks[d], tasks[t["id"]]) for t in plan for d in t["dep"] if d >= 0)
    if made != sorted(case.links):
        return None
    uploads = fake_uploads(case.files)
    try:
        validate_plan(parse_plan_json(plan), uploads, set(TASK_TYPES))
    except PlanError:
        return None
    files = ", ".join(f"{name} ({ref.kind})" for name, ref in uploads.items())
    return (f"{case.request} [files: {files}]" if files else case.request), plan


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    kept = dropped = held = 0
    lines = Path(argv[1]).read_text(encoding="utf-8").splitlines()
    with OUT.open("w", encoding="utf-8") as out:
        for index, line in enumerate(lines):
            if not line.strip():
                continue
            if index % 3 == HELD_OUT_FOLD:
                held += 1
                continue
            obj = json.loads(line)
            demo = convert(obj)
            if demo is None:
                dropped += 1
                continue
            request, plan = demo
            out.write(json.dumps({"id": str(obj.get("id", index)), "source": f"dev.jsonl line {index + 1}",
                                  "request": request, "tasks": plan}, ensure_ascii=False) + "\n")
            kept += 1
    print(f"{kept} demonstrations written to {OUT.relative_to(ROOT)}; {dropped} records did not convert; "
          f"{held} held out (fold B)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
