"""Scoring a predicted plan against ground truth: TaskBench's node and link F1 (multiset
matching), per request and summed over a run, overall and by shape."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from planner_service.eval_cases import Link
from shared.plan import ValidatedPlan


# --- metrics -----------------------------------------------------------------------------------
@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        """2TP / (2TP + FP + FN); 1.0 when there is nothing to find and nothing was predicted."""
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 1.0


def match(gold: Iterable[Any], pred: Iterable[Any]) -> Counts:
    """Multiset matching: each gold item matches at most one predicted item."""
    g, p = Counter(gold), Counter(pred)
    tp = sum((g & p).values())
    return Counts(tp=tp, fp=sum(p.values()) - tp, fn=sum(g.values()) - tp)


def f1(gold: Iterable[Any], pred: Iterable[Any]) -> float:
    return match(gold, pred).f1


def plan_nodes(plan: ValidatedPlan | None) -> list[str]:
    return [n.task for n in plan.nodes] if plan else []


def plan_links(plan: ValidatedPlan | None) -> list[Link]:
    """(source task, target task) for every dependency; validation already folds refs into deps."""
    if plan is None:
        return []
    by_id = plan.by_id()
    return sorted((by_id[d].task, n.task) for n in plan.nodes for d in n.deps if d in by_id)


# --- results -----------------------------------------------------------------------------------
@dataclass
class CaseResult:
    id: str
    type: str
    request: str
    valid: bool
    latency_s: float
    gold_nodes: list[str]
    pred_nodes: list[str]
    gold_links: list[Link]
    pred_links: list[Link]
    node: Counts
    link: Counts
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    plan: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["node_f1"], d["link_f1"] = self.node.f1, self.link.f1
        d["gold_links"] = [list(x) for x in self.gold_links]
        d["pred_links"] = [list(x) for x in self.pred_links]
        return d


@dataclass
class Summary:
    n: int
    valid: int
    node: Counts
    link: Counts
    mean_latency_s: float
    node_f1_macro: float
    link_f1_macro: float
    prompt_tokens: int
    completion_tokens: int
    first_try_valid: int = 0  # valid without the repair round
    empty: int = 0  # valid but empty plans for requests whose ground truth has tasks (a silent chat answer)
    by_type: dict[str, dict[str, float]] = field(default_factory=dict)
    by_failure: dict[str, int] = field(default_factory=dict)  # failure_kind -> requests
    median_latency_s: float = 0.0
    skipped: list[str] = field(default_factory=list)  # records of the file that could not be scored
    unmapped_tools: list[str] = field(default_factory=list)  # gold tools no hgq type serves
    loose_tools: list[str] = field(default_factory=list)  # gold tools scored as an approximate hgq type

    @property
    def valid_rate(self) -> float:
        return self.valid / self.n if self.n else 0.0

    def to_json(self) -> dict[str, object]:
        return {"n": self.n, "valid": self.valid, "valid_rate": self.valid_rate,
                "first_try_valid": self.first_try_valid, "empty_plans": self.empty,
                "node_f1": self.node.f1, "link_f1": self.link.f1,
                "node_precision": self.node.precision, "node_recall": self.node.recall,
                "link_precision": self.link.precision, "link_recall": self.link.recall,
                "node_f1_macro": self.node_f1_macro, "link_f1_macro": self.link_f1_macro,
                "mean_latency_s": self.mean_latency_s, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "by_type": self.by_type,
                "median_latency_s": self.median_latency_s, "by_failure": self.by_failure,
                "skipped": self.skipped, "unmapped_tools": self.unmapped_tools, "loose_tools": self.loose_tools}


_INVALID_KINDS = [("references its own output", "invalid: self-reference"),
                  ("needs ", "invalid: input of the wrong kind"), ("unknown arg", "invalid: unknown arg name"),
                  ("missing required arg", "invalid: missing input"),
                  ("unknown task type", "invalid: unknown task type"),
                  ("no live worker", "invalid: task type not served"), ("dropped all tasks", "invalid: repair emptied"),
                  ("LLM:", "invalid: LLM endpoint"), ("cycle", "invalid: cycle")]


def failure_kind(r: CaseResult) -> str:
    """What went wrong with one request's plan (or "right")."""
    if not r.valid:
        return next((kind for cue, kind in _INVALID_KINDS if cue in (r.error or "")), "invalid: other")
    if not r.pred_nodes and r.gold_nodes:
        return "empty plan"
    if r.node.f1 < 1.0:
        if r.node.fn and not r.node.fp:
            return "tasks missing"
        return "tasks extra" if r.node.fp and not r.node.fn else "wrong tasks"
    return "wrong links" if r.link.f1 < 1.0 else "right"


def summarize(results: list[CaseResult]) -> Summary:
    node, link = Counts(), Counts()
    for r in results:
        node, link = node + r.node, link + r.link
    n = len(results)
    by_type: dict[str, dict[str, float]] = {}
    for kind in sorted({r.type for r in results if r.type}):
        sub = [r for r in results if r.type == kind]
        sn, sl = Counts(), Counts()
        for r in sub:
            sn, sl = sn + r.node, sl + r.link
        by_type[kind] = {"n": len(sub), "node_f1": sn.f1, "link_f1": sl.f1,
                         "valid_rate": sum(r.valid for r in sub) / len(sub)}
    return Summary(
        n=n, valid=sum(r.valid for r in results), node=node, link=link,
        mean_latency_s=sum(r.latency_s for r in results) / n if n else 0.0,
        # macro: an invalid plan scores 0 (its empty link set would otherwise "match" a single task's)
        node_f1_macro=sum(r.node.f1 if r.valid else 0.0 for r in results) / n if n else 0.0,
        link_f1_macro=sum(r.link.f1 if r.valid else 0.0 for r in results) / n if n else 0.0,
        median_latency_s=statistics.median(r.latency_s for r in results) if n else 0.0,
        by_failure=dict(Counter(failure_kind(r) for r in results).most_common()),
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        first_try_valid=sum(r.valid and r.llm_calls <= 1 for r in results),
        empty=sum(r.valid and not r.pred_nodes and bool(r.gold_nodes) for r in results), by_type=by_type)
