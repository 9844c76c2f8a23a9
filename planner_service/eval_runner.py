"""The evaluation loop: plan each ground-truth request, score it, and report rows and totals."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from planner_service.eval_cases import DEFAULT_AVAILABLE, EvalCase, Link, fake_uploads
from planner_service.eval_scoring import CaseResult, Summary, failure_kind, match, plan_links, plan_nodes, summarize
from shared.errors import LLMError, PlanError
from shared.outputs import ArtifactRef
from shared.plan import ValidatedPlan

PlanFn = Callable[[str, Mapping[str, ArtifactRef], set[str]], ValidatedPlan]


def evaluate_case(plan_fn: PlanFn, case: EvalCase, available: set[str],
                  usage: list[tuple[int, int]] | None = None) -> CaseResult:
    """Plan one request and score it. `usage` is the list the LLM's usage sink appends to."""
    mark = len(usage) if usage is not None else 0
    plan: ValidatedPlan | None = None
    error: str | None = None
    started = time.perf_counter()
    try:
        plan = plan_fn(case.request, fake_uploads(case.files), set(available))
    except PlanError as exc:
        error = str(exc)
    except LLMError as exc:  # endpoint failure or timeout: no plan either
        error = f"LLM: {exc}"
    latency = time.perf_counter() - started
    calls = usage[mark:] if usage is not None else []
    pred_nodes, pred_links = plan_nodes(plan), plan_links(plan)
    return CaseResult(
        id=case.id, type=case.type, request=case.request, valid=plan is not None, latency_s=latency,
        gold_nodes=case.node_names, pred_nodes=pred_nodes, gold_links=case.links, pred_links=pred_links,
        node=match(case.node_names, pred_nodes), link=match(case.links, pred_links),
        llm_calls=len(calls), prompt_tokens=sum(c[0] for c in calls), completion_tokens=sum(c[1] for c in calls),
        error=error, plan=[n.public() for n in plan.nodes] if plan else [])


def evaluate(plan_fn: PlanFn, cases: list[EvalCase], available: Iterable[str] = DEFAULT_AVAILABLE,
             usage: list[tuple[int, int]] | None = None,
             on_result: Callable[[int, CaseResult], None] | None = None) -> tuple[list[CaseResult], Summary]:
    results: list[CaseResult] = []
    for i, case in enumerate(cases):
        result = evaluate_case(plan_fn, case, set(available), usage)
        results.append(result)
        if on_result is not None:
            on_result(i, result)
    return results, summarize(results)


# --- output ------------------------------------------------------------------------------------
ROW = "{:<6} {:<6} {:>5} {:>7} {:>7} {:>7} {:>5}  {}"


def table_header() -> str:
    return ROW.format("id", "type", "valid", "nodeF1", "linkF1", "secs", "calls", "predicted | gold")


def table_row(r: CaseResult) -> str:
    def chain(nodes: list[str], links: list[Link]) -> str:
        text = ",".join(nodes) or "-"
        if links:
            text += " [" + ",".join(f"{a}>{b}" for a, b in links) + "]"
        return text

    detail = f"{chain(r.pred_nodes, r.pred_links)} | {chain(r.gold_nodes, r.gold_links)}"
    if r.error:
        detail += f" | {r.error[:160]}"
    return ROW.format(r.id[:6], r.type[:6], "yes" if r.valid else "NO", f"{r.node.f1:.2f}", f"{r.link.f1:.2f}",
                      f"{r.latency_s:.1f}", r.llm_calls, detail)


def totals_text(s: Summary) -> str:
    lines = [
        f"requests          {s.n}",
        f"valid-plan rate   {s.valid_rate:.3f} ({s.valid}/{s.n}; {s.first_try_valid} without a repair round; "
        f"{s.empty} empty where tasks were expected)",
        f"node F1 (micro)   {s.node.f1:.3f}  (P {s.node.precision:.3f}, R {s.node.recall:.3f}; macro {s.node_f1_macro:.3f})",
        f"link F1 (micro)   {s.link.f1:.3f}  (P {s.link.precision:.3f}, R {s.link.recall:.3f}; macro {s.link_f1_macro:.3f})",
        f"latency           median {s.median_latency_s:.2f} s, mean {s.mean_latency_s:.2f} s",
        f"LLM tokens        {s.prompt_tokens} prompt, {s.completion_tokens} completion",
    ]
    if s.by_type:
        lines.append("by shape (link F1 of `single` counts only spurious links: it has none to find):")
    for kind, m in s.by_type.items():
        lines.append(f"  {kind:<7} n={int(m['n']):<3} node F1 {m['node_f1']:.3f}  link F1 {m['link_f1']:.3f}  "
                     f"valid {m['valid_rate']:.3f}")
    if s.by_failure:
        lines.append("by outcome: " + ", ".join(f"{kind} {n}" for kind, n in s.by_failure.items()))
    if s.skipped:
        lines.append(f"skipped records  {len(s.skipped)} (not scored): " + "; ".join(s.skipped[:5])
                     + (" ..." if len(s.skipped) > 5 else ""))
    if s.unmapped_tools:
        lines.append(f"unmapped tools   {', '.join(s.unmapped_tools)} (no hgq task type: never matched)")
    if s.loose_tools:
        lines.append(f"loose mappings   {', '.join(s.loose_tools)} (scored as the nearest hgq type)")
    return "\n".join(lines)


def worst_text(results: list[CaseResult], n: int = 8) -> str:
    """The n worst plans, each as a diff against the ground truth."""
    ranked = sorted((r for r in results if failure_kind(r) != "right"),
                    key=lambda r: (r.valid, r.node.f1 + r.link.f1, r.id))[:n]
    lines = [f"worst {len(ranked)} plan(s):"] if ranked else []
    for r in ranked:
        missing = sorted((Counter(r.gold_nodes) - Counter(r.pred_nodes)).elements())
        extra = sorted((Counter(r.pred_nodes) - Counter(r.gold_nodes)).elements())
        lines.append(f"- {r.id} [{failure_kind(r)}] {r.request[:110]}")
        if missing or extra:
            lines.append(f"    tasks:  -{','.join(missing) or '(none)'}  +{','.join(extra) or '(none)'}")
        lost = sorted((Counter(r.gold_links) - Counter(r.pred_links)).elements())
        added = sorted((Counter(r.pred_links) - Counter(r.gold_links)).elements())
        if lost or added:
            lines.append(f"    links:  -{','.join(f'{a}>{b}' for a, b in lost) or '(none)'}  "
                         f"+{','.join(f'{a}>{b}' for a, b in added) or '(none)'}")
        if r.error:
            lines.append(f"    error:  {r.error[:200]}")
    return "\n".join(lines)
