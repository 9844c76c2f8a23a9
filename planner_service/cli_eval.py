"""`hgq eval plans FILE`: score the planner against ground-truth plans in TaskBench's format.

The command line's side of the evaluation: it composes the planner (`planner_service.eval_*`) with
the task types this install's workers serve (`workers.pools`), which is why it is a `cli*` module.
`register(main)` adds the `eval` group to the hgq command line;
`python -m planner_service.cli_eval plans FILE` works on its own.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from planner_service.eval_cases import DEFAULT_FILE, read_cases, tool_mapping
from planner_service.eval_runner import CaseResult, evaluate, table_header, table_row, totals_text, worst_text
from planner_service.plan_demos import bank_requests
from shared.catalog import TASK_TYPES
from shared.errors import HgqError
from shared.outputs import ArtifactRef
from shared.plan import ValidatedPlan


def installed_task_types(settings: Any) -> set[str]:
    """The task types this install's own experts serve: what its live workers would offer the planner
    (the LLM's text tasks included: the evaluation always has an LLM)."""
    from workers.expert import expert_classes
    from workers.pools import POOL_MODULES, serving_experts

    local = {cls.task for pool in POOL_MODULES for cls in serving_experts(pool, settings) if cls.backend == "local"}
    return local | {cls.task for cls in expert_classes() if cls.backend == "llm"}


# --- command line ------------------------------------------------------------------------------
@click.group("eval")
def eval_group() -> None:
    """Evaluate hgq's LLM stages against ground truth."""


@eval_group.command("plans")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--limit", type=int, default=None, help="only the first N requests")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (results and totals)")
@click.option("--available", default=None,
              help="comma-separated task types offered to the planner (default: those this install's local models serve)")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also append each result to this JSONL file as it completes (then the summary)")
def plans_cmd(file: Path | None, limit: int | None, as_json: bool, available: str | None,
              save: Path | None) -> None:
    """Plan every request of FILE (TaskBench format; default: the bundled set) and score the plans."""
    from planner_service.planning import plan_request
    from shared.llm_client import LLM
    from shared.settings import get_settings

    path = file or DEFAULT_FILE
    try:
        read = read_cases(path)
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"error: cannot read {path}: {exc}", err=True)
        sys.exit(2)
    demos = bank_requests()  # a request the planner is shown as a demonstration scores nothing
    unseen = [c for c in read.cases if c.request.strip() not in demos]
    if len(unseen) < len(read.cases):
        read.skipped.append(f"{len(read.cases) - len(unseen)} record(s) are planner demonstrations (the "
                            f"demonstration bank holds them), not scored")
    cases = unseen[:limit]
    if not cases:
        click.echo(f"error: {path} has no usable record ({len(read.skipped)} skipped: "
                   f"{'; '.join(read.skipped[:3])})", err=True)
        sys.exit(2)
    for reason in read.skipped:
        click.echo(f"skipped {reason}", err=True)
    settings = get_settings()
    offered = installed_task_types(settings) if available is None else {
        a.strip() for a in available.split(",") if a.strip()}
    unknown = sorted(offered - set(TASK_TYPES))
    if unknown:
        click.echo(f"error: unknown task types: {', '.join(unknown)}", err=True)
        sys.exit(2)

    try:
        if not settings.openai_base_url:
            from shared.local_llm import ensure_local_llm

            click.echo("no OPENAI_BASE_URL: starting the local LLM", err=True)
            local = ensure_local_llm(settings)
            settings = settings.model_copy(update={"openai_base_url": local.base_url, "llm_model": local.model,
                                                   "llm_response_format": "json_object"})
        usage: list[tuple[int, int]] = []
        llm = LLM(settings, on_usage=lambda _stage, p, c, _s: usage.append((p, c)))
    except HgqError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)

    def plan_fn(text: str, uploads: Mapping[str, ArtifactRef], avail: set[str]) -> ValidatedPlan:
        return plan_request(llm, text, uploads, avail)

    def show(i: int, r: CaseResult) -> None:
        if save is not None:
            with save.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(r.to_json()) + "\n")
        if as_json:
            click.echo(f"[{i + 1}/{len(cases)}] {r.id} valid={r.valid} node_f1={r.node.f1:.2f} "
                       f"link_f1={r.link.f1:.2f} {r.latency_s:.1f}s", err=True)
        else:
            click.echo(table_row(r))

    click.echo(f"{len(cases)} request(s) from {path}; model {settings.llm_model} at {settings.openai_base_url}",
               err=True)
    if not as_json:
        click.echo(table_header())
    results, summary = evaluate(plan_fn, cases, offered, usage, on_result=show)
    summary.skipped = read.skipped
    summary.unmapped_tools, summary.loose_tools = tool_mapping(n.tool for c in cases for n in c.nodes)
    if save is not None:
        with save.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"summary": summary.to_json()}) + "\n")
    if as_json:
        click.echo(json.dumps({"file": str(path), "model": settings.llm_model, "available": sorted(offered),
                               "summary": summary.to_json(), "results": [r.to_json() for r in results]}, indent=2))
    else:
        click.echo("")
        click.echo(totals_text(summary))
        click.echo(worst_text(results))


def register(main: click.Group) -> None:
    """Add the `eval` group (`hgq eval plans FILE`, `hgq eval e2e FILE`) to the hgq command group."""
    from planner_service.cli_eval_e2e import e2e_cmd

    eval_group.add_command(e2e_cmd, "e2e")
    main.add_command(eval_group, "eval")


if __name__ == "__main__":
    eval_group()
