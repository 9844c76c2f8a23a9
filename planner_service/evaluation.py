"""`hgq eval plans FILE`: score the planner against ground-truth plans in TaskBench's format.

Ground truth, one JSON object a line (TaskBench's `data.json` layout, arXiv 2311.18760)::

    {"id": "c01", "user_request": "Transcribe memo.wav and summarise it.", "type": "chain",
     "task_nodes": [{"task": "Automatic Speech Recognition", "arguments": ["memo.wav"]},
                    {"task": "Summarization", "arguments": ["<node-0>"]}],
     "task_links": [{"source": "Automatic Speech Recognition", "target": "Summarization"}]}

`task` is a TaskBench tool name or an hgq task type; an argument is literal text, a file name,
or `<node-j>` (node j's output). `type` (single | chain | dag) and `files` are optional.

Metrics (TaskBench's, on hgq task types): node F1 over the multiset of task names, link F1
over the multiset of (source task, target task) pairs (predicted: `<GENERATED>-N` references
plus `dep`; gold: `task_links` plus `<node-j>` arguments), both micro-averaged over requests;
valid-plan rate (a PlanError or an LLM failure is an invalid plan, scored as an empty one);
mean planning latency (repair round included).

`register(main)` adds the `eval` group to the hgq command line;
`python -m planner_service.evaluation plans FILE` works on its own.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

import click

from shared.catalog import TASK_TYPES
from shared.errors import HgqError, LLMError, PlanError
from shared.outputs import ArtifactRef
from shared.plan import PlanTask, ValidatedPlan

DEFAULT_FILE = Path(__file__).resolve().parent / "data" / "eval_plans.jsonl"

# Task types that run on this machine's local models (non-diagnostic): what the planner is offered.
DEFAULT_AVAILABLE: frozenset[str] = frozenset({
    "automatic-speech-recognition", "text-to-speech", "audio-classification",
    "image-to-text", "image-to-image",
    "text-classification", "language-detection", "summarization", "translation", "conversational",
    "text-generation", "text2text-generation", "question-answering",
})

# TaskBench tool names (huggingface domain, tool_desc.json) and common aliases -> hgq task types.
# Keys are normalised with _norm(). A name that is neither here nor an hgq type is kept as its slug.
TASKBENCH_TO_HGQ: dict[str, str] = {
    # the 23 TaskBench huggingface tools
    "token classification": "token-classification",
    "translation": "translation",
    "summarization": "summarization",
    "question answering": "question-answering",
    "conversational": "conversational",
    "text generation": "text-generation",
    "sentence similarity": "sentence-similarity",
    "tabular classification": "image-classification",  # TaskBench: "classifying a table (in image format)"
    "object detection": "object-detection",
    "image classification": "image-classification",
    "image-to-image": "image-to-image",
    "image-to-text": "image-to-text",
    "text-to-image": "text-to-image",
    "text-to-video": "text-to-video",  # no hgq equivalent: never matches a predicted task
    "visual question answering": "visual-question-answering",
    "document question answering": "document-question-answering",
    "image segmentation": "image-segmentation",
    "depth estimation": "depth-estimation",
    "text-to-speech": "text-to-speech",
    "automatic speech recognition": "automatic-speech-recognition",
    "audio-to-audio": "audio-to-audio",
    "audio classification": "audio-classification",
    "image editing": "image-to-image",
    # Hugging Face pipeline names and usual aliases
    "text classification": "text-classification",
    "sentiment analysis": "text-classification",
    "zero-shot classification": "text-classification",
    "text2text generation": "text2text-generation",
    "text-to-text generation": "text2text-generation",
    "language detection": "language-detection",
    "language identification": "language-detection",
    "speech recognition": "automatic-speech-recognition",
    "speech-to-text": "automatic-speech-recognition",
    "optical character recognition": "image-to-text",
    "ocr": "image-to-text",
    "image captioning": "image-to-text",
    "named entity recognition": "token-classification",
    "text to speech": "text-to-speech",
    "image to text": "image-to-text",
    "image to image": "image-to-image",
}

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
AUDIO_EXT = {".wav", ".mp3", ".flac", ".ogg", ".m4a", ".opus"}
_FILE_RE = re.compile(r"[\w\-./]+\.(?:" + "|".join(e[1:] for e in sorted(IMAGE_EXT | AUDIO_EXT)) + r")\b",
                      re.IGNORECASE)
_NODE_REF = re.compile(r"<\s*node-(\d+)\s*>", re.IGNORECASE)

Link = tuple[str, str]


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().lower())


def hgq_task(name: str) -> str:
    """A TaskBench tool name (or an hgq task type) as an hgq task type."""
    key = _norm(name)
    if key in TASKBENCH_TO_HGQ:
        return TASKBENCH_TO_HGQ[key]
    slug = key.replace(" ", "-")
    return slug


# --- ground truth ------------------------------------------------------------------------------
@dataclass
class GoldNode:
    task: str  # hgq task type
    arguments: list[str]


@dataclass
class EvalCase:
    id: str
    request: str
    nodes: list[GoldNode]
    links: list[Link]  # (source task, target task), as a multiset
    files: list[str]
    type: str = ""

    @property
    def node_names(self) -> list[str]:
        return [n.task for n in self.nodes]


def _arg_values(arguments: object) -> list[str]:
    """TaskBench arguments: a list of strings, or of {"name", "value"} objects, or a dict."""
    if isinstance(arguments, Mapping):
        items: Iterable[object] = arguments.values()
    elif isinstance(arguments, list):
        items = arguments
    elif arguments is None:
        items = []
    else:
        items = [arguments]
    out: list[str] = []
    for item in items:
        if isinstance(item, Mapping):
            out.append(str(item.get("value", "")))
        else:
            out.append(str(item))
    return out


def _resolve_endpoint(value: object, tasks: list[str]) -> str:
    """A task_links endpoint: a tool name, or a node index (int, "2", "<node-2>", "node-2")."""
    if isinstance(value, int) and 0 <= value < len(tasks):
        return tasks[value]
    text = str(value).strip()
    m = _NODE_REF.fullmatch(text) or re.fullmatch(r"node-(\d+)", text, re.IGNORECASE) or re.fullmatch(r"(\d+)", text)
    if m and int(m.group(1)) < len(tasks):
        return tasks[int(m.group(1))]
    return hgq_task(text)


def parse_case(obj: Mapping[str, Any], line_no: int = 0) -> EvalCase:
    request = obj.get("user_request") or obj.get("request")
    if not isinstance(request, str) or not request.strip():
        raise ValueError(f"line {line_no}: missing user_request")
    raw_nodes = obj.get("task_nodes") or []
    nodes = [GoldNode(task=hgq_task(str(n["task"])), arguments=_arg_values(n.get("arguments")))
             for n in raw_nodes]
    names = [n.task for n in nodes]
    links = Counter[Link]()
    for raw in obj.get("task_links") or []:
        links[(_resolve_endpoint(raw["source"], names), _resolve_endpoint(raw["target"], names))] += 1
    from_args = Counter[Link]()
    for i, node in enumerate(nodes):
        for arg in node.arguments:
            for m in _NODE_REF.finditer(arg):
                j = int(m.group(1))
                if j >= len(nodes) or j == i:
                    raise ValueError(f"line {line_no}: node {i} references missing node {j}")
                from_args[(names[j], node.task)] += 1
    links |= from_args  # the same link stated both ways counts once
    files = list(obj.get("files") or [])
    if not files:
        found = _FILE_RE.findall(request)
        for node in nodes:
            for arg in node.arguments:
                if _media_kind(arg) and not _NODE_REF.search(arg):
                    found.append(arg.strip())
        files = list(dict.fromkeys(found))
    return EvalCase(id=str(obj.get("id", line_no)), request=request, nodes=nodes,
                    links=sorted(links.elements()), files=files, type=str(obj.get("type", "")))


def load_cases(path: Path | str, limit: int | None = None) -> list[EvalCase]:
    cases: list[EvalCase] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cases.append(parse_case(json.loads(line), line_no))
            if limit is not None and len(cases) >= limit:
                break
    return cases


def gold_plan(case: EvalCase) -> list[PlanTask]:
    """The ground truth as an hgq plan: positional arguments fill input slots, then parameters."""
    tasks: list[PlanTask] = []
    for i, node in enumerate(case.nodes):
        spec = TASK_TYPES.get(node.task)
        names = [*spec.inputs, *spec.params] if spec else []
        args: dict[str, str] = {}
        deps: set[int] = set()
        for name, value in zip(names, node.arguments):
            m = _NODE_REF.fullmatch(value.strip())
            if m:
                deps.add(int(m.group(1)))
                value = f"<GENERATED>-{m.group(1)}"
            args[name] = value
        tasks.append(PlanTask(id=i, task=node.task, dep=sorted(deps) or [-1], args=args))
    return tasks


def _media_kind(name: str) -> str | None:
    ext = PurePath(name.strip()).suffix.lower()
    return "image" if ext in IMAGE_EXT else "audio" if ext in AUDIO_EXT else None


def fake_uploads(files: Iterable[str]) -> dict[str, ArtifactRef]:
    """ArtifactRefs standing in for the request's files (kind from the extension; no content)."""
    out: dict[str, ArtifactRef] = {}
    for name in files:
        kind = _media_kind(name)
        if kind is None:
            continue
        mime = mimetypes.guess_type(name)[0] or ("image/png" if kind == "image" else "audio/wav")
        out[name] = ArtifactRef(id=hashlib.sha256(name.encode()).hexdigest(), mime=mime, kind=kind,  # type: ignore[arg-type]
                                size=0, name=name)
    return out


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


# --- running -----------------------------------------------------------------------------------
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
                "completion_tokens": self.completion_tokens, "by_type": self.by_type}


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
        node_f1_macro=sum(r.node.f1 for r in results) / n if n else 0.0,
        link_f1_macro=sum(r.link.f1 for r in results) / n if n else 0.0,
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        first_try_valid=sum(r.valid and r.llm_calls <= 1 for r in results),
        empty=sum(r.valid and not r.pred_nodes and bool(r.gold_nodes) for r in results), by_type=by_type)


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
        f"mean latency      {s.mean_latency_s:.2f} s",
        f"LLM tokens        {s.prompt_tokens} prompt, {s.completion_tokens} completion",
    ]
    if s.by_type:
        lines.append("by shape (link F1 of `single` counts only spurious links: it has none to find):")
    for kind, m in s.by_type.items():
        lines.append(f"  {kind:<7} n={int(m['n']):<3} node F1 {m['node_f1']:.3f}  link F1 {m['link_f1']:.3f}  "
                     f"valid {m['valid_rate']:.3f}")
    return "\n".join(lines)


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
    from planner_service.llm import LLM
    from planner_service.planning import plan_request
    from shared.settings import get_settings

    path = file or DEFAULT_FILE
    try:
        cases = load_cases(path, limit)
    except (OSError, ValueError, KeyError) as exc:
        click.echo(f"error: cannot read {path}: {exc}", err=True)
        sys.exit(2)
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
    if save is not None:
        with save.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"summary": summary.to_json()}) + "\n")
    if as_json:
        click.echo(json.dumps({"file": str(path), "model": settings.llm_model, "available": sorted(offered),
                               "summary": summary.to_json(), "results": [r.to_json() for r in results]}, indent=2))
    else:
        click.echo("")
        click.echo(totals_text(summary))


def register(main: click.Group) -> None:
    """Add the `eval` group (`hgq eval plans FILE`) to the hgq command group."""
    main.add_command(eval_group, "eval")


if __name__ == "__main__":
    eval_group()
