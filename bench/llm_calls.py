"""Controller LLM calls per request: the old rules against today's, on an evaluation set's plans.

For each request of a ground-truth file (default: planner_service/data/eval_plans.jsonl, the
40 hand-written requests), with the gold plan and the models this install's workers serve:

* plan: 1 call (a repair round, the same under both rules, is not counted);
* select: before, 1 call when any task had more than one fitting candidate; now, only when close
  candidates are told apart by the request (`planner_service.selection.rank_models`);
* respond: before, always 1; now 0 when the result is the answer (`direct_answer`'s rule: no
  question in the request, every final task's result shown as it is), assuming the tasks succeed.

    .venv/bin/python bench/llm_calls.py [--file F] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _plan_for(case: Any, served: dict[str, Any]) -> Any:
    """The gold tasks as a plan hgq could run (inputs filled in; dependencies do not matter here)."""
    from shared.catalog import TASK_TYPES
    from shared.outputs import ArtifactRef
    from shared.plan import PlanTask, validate_plan

    tasks, uploads = [], {}
    for i, node in enumerate(case.nodes):
        spec = TASK_TYPES[node.task]
        args: dict[str, str] = {}
        for slot, s in spec.inputs.items():
            if not s.required:
                continue
            if s.kind in ("image", "audio"):
                name = f"file{i}-{slot}.{'png' if s.kind == 'image' else 'wav'}"
                uploads[name] = ArtifactRef(id=f"{i:064d}", mime="image/png" if s.kind == "image" else "audio/wav",
                                            kind=s.kind, size=1, name=name)
                args[slot] = name
            else:
                args[slot] = "some text"
        tasks.append(PlanTask(id=i, task=node.task, args=args))
    return validate_plan(tasks, uploads, set(served))


def count(path: Path) -> dict[str, Any]:
    from planner_service.direct_answer import FILE_RESULTS, TEXT_RESULTS, asks_for_an_answer
    from planner_service.eval_cases import read_cases
    from planner_service.selection import rank_models
    from shared.settings import Settings
    from workers.pools import served_models

    settings = Settings(diagnostics=False)
    served: dict[str, list[Any]] = {}
    for pool in ("text", "vision", "audio"):
        for model in served_models(pool, settings):
            served.setdefault(model.task, []).append(model)
    before: list[int] = []
    after: list[int] = []
    skipped: list[str] = []
    by_type: dict[str, list[int]] = {}
    for case in read_cases(path).cases:
        if not case.nodes:
            before.append(2)  # plan + respond (chat)
            after.append(2)
            continue
        if any(n.task not in served for n in case.nodes):
            skipped.append(case.id)
            continue
        plan = _plan_for(case, served)
        fitting = [[m for m in served[n.task] if m.accepts(n.params)] or served[n.task] for n in plan.nodes]
        old_select = int(any(len(f) > 1 for f in fitting))
        _, contested = rank_models(case.request, plan, served)
        sources = {src for src, _ in case.links}
        sinks = [n.task for n in case.nodes if n.task not in sources]
        direct = not asks_for_an_answer(case.request) and all(t in TEXT_RESULTS or t in FILE_RESULTS for t in sinks)
        before.append(1 + old_select + 1)
        after.append(1 + int(bool(contested)) + (0 if direct else 1))
        by_type.setdefault(case.type or "?", []).append(after[-1])
    return {"file": str(path), "requests": len(before), "skipped_unserved": skipped,
            "mean_calls_before": round(statistics.mean(before), 2), "mean_calls_after": round(statistics.mean(after), 2),
            "after_by_shape": {k: round(statistics.mean(v), 2) for k, v in sorted(by_type.items())},
            "one_call_requests_after": sum(1 for a in after if a == 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--file", type=Path, default=ROOT / "planner_service" / "data" / "eval_plans.jsonl")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    report = count(args.file)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['requests']} requests of {report['file']}")
        print(f"mean controller LLM calls per request: before {report['mean_calls_before']}, "
              f"now {report['mean_calls_after']} ({report['one_call_requests_after']} requests with one call)")
        print(f"now, by shape: {report['after_by_shape']}")
        if report["skipped_unserved"]:
            print(f"skipped (a task type not served here): {', '.join(report['skipped_unserved'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
