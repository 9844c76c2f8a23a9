"""Ground-truth plans in TaskBench's format, for `hgq eval plans FILE`.

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

Scoring is `planner_service.eval_scoring`, the loop and its report `planner_service.eval_runner`,
the command `planner_service.cli_eval`. This module reads the ground truth.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from shared.catalog import TASK_TYPES
from shared.outputs import ArtifactRef
from shared.plan import PlanTask

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
    "text-to-video": "text-to-video",  # a diffusers model serves it (HGQ_MODELS_FILE); not offline
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

# Mappings that are approximations (scored as the hgq type, but listed in the report).
LOOSE: dict[str, str] = {
    "tabular classification": "a table photographed as an image, classified as an image",
    "image editing": "free-form editing, served by image-to-image's fixed styles",
    "conversational": "TaskBench's chat reply tool; hgq answers plain chat without a task",
    "zero-shot classification": "scored as text-classification with labels",
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
    tool: str = ""  # the name the ground truth gave it


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
    nodes = [GoldNode(task=hgq_task(str(n["task"])), arguments=_arg_values(n.get("arguments")),
                      tool=str(n["task"])) for n in raw_nodes]
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


@dataclass
class CaseFile:
    """A ground-truth file as read: its usable cases, and the records skipped with the reason."""

    cases: list[EvalCase]
    skipped: list[str]


def read_cases(path: Path | str, limit: int | None = None) -> CaseFile:
    """Every usable record of a file. A record that cannot be scored (bad JSON, no request, a
    `<node-j>` pointing at its own node or past the end: about 4% of TaskBench) is skipped and
    counted, not fatal. OSError when the file cannot be read."""
    read = CaseFile(cases=[], skipped=[])
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                read.cases.append(parse_case(json.loads(line), line_no))
            except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
                reason = str(exc)
                read.skipped.append(reason if reason.startswith("line ") else f"line {line_no}: {reason}")
            if limit is not None and len(read.cases) >= limit:
                break
    return read


def load_cases(path: Path | str, limit: int | None = None) -> list[EvalCase]:
    """The usable cases of a file (see `read_cases` for what is skipped)."""
    return read_cases(path, limit).cases


def tool_mapping(case_tools: Iterable[str]) -> tuple[list[str], list[str]]:
    """Of ground-truth tool names: those that map to no hgq task type, and those mapped loosely."""
    tools = set(case_tools)  # read once: callers pass generators
    unmapped = sorted(t for t in tools if hgq_task(t) not in TASK_TYPES)
    loose = sorted(t for t in tools if _norm(t) in LOOSE)
    return unmapped, loose


def gold_plan(case: EvalCase) -> list[PlanTask]:
    """The ground truth as an hgq plan: positional arguments fill input slots, then parameters."""
    tasks: list[PlanTask] = []
    for i, node in enumerate(case.nodes):
        spec = TASK_TYPES.get(node.task)
        names = [*spec.inputs, *spec.params] if spec else []
        args: dict[str, str] = {}
        deps: set[int] = set()
        for name, value in zip(names, node.arguments, strict=False):
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
        out[name] = ArtifactRef(id=hashlib.sha256(name.encode()).hexdigest(), mime=mime, kind=kind,
                                size=0, name=name)
    return out
