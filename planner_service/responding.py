"""Stage 4, response: the LLM writes the answer from the results (failures included)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from shared.artifacts import artifact_file_name
from shared.catalog import TASK_TYPES
from shared.llm_client import LLM
from shared.outputs import TaskOutput
from shared.plan import Binding, Node, ValidatedPlan
from shared.run_models import NodeInfo

MAX_TEXT_CHARS = 1500
MAX_INPUT_CHARS = 300

IDENTITY = ("You are hgq, an open-source assistant that answers requests by running AI models (speech, vision and "
            "text models served by hgq's own workers, planned by a local or configured LLM). You were not made by "
            "OpenAI or any other company; hgq is a HuggingGPT-style system on a task queue.")
ANSWER_RULES = (
    "Answer the user's request directly, in plain sentences, using only the facts in Results. Quote texts, labels, "
    "counts and languages exactly as Results give them; compare and count only from those facts. Do not add "
    "content Results do not contain, and do not guess what a file contains beyond its facts. Name each produced "
    "file once, so the user can find it. A task with an empty output found nothing (say so). If a task failed or "
    "was skipped, say which and why in one sentence. Do not describe the workflow, the tasks or the models unless "
    "the user asks about them. No headings.")


def describe_results(plan: ValidatedPlan, states: dict[int, str], outputs: dict[int, TaskOutput],
                     infos: dict[int, NodeInfo]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for node in plan.nodes:
        info = infos.get(node.id, NodeInfo())
        row: dict[str, object] = {"id": node.id, "task": node.task, "model": info.model or node.model,
                                  "status": states.get(node.id, "?")}
        failed_models = [f"{a.model}: {a.error}" for a in info.model_attempts if a.outcome == "fallback"]
        if failed_models:
            row["models_that_failed_first"] = failed_models
        fed = _text_inputs(node, outputs)
        if fed:
            row["input"] = fed
        out = outputs.get(node.id)
        if out is not None:
            text = out.as_text()
            if text is not None:
                row["text"] = text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + " [...]"
            if out.artifacts:
                files = [artifact_file_name(node.id, a) for a in out.artifacts]
                row["files"] = files
                row.setdefault("text", f"produced {', '.join(a.kind for a in out.artifacts)}: {', '.join(files)}")
        error = info.error
        if row["status"] == "skipped":
            failed_deps = [d for d in node.deps if states.get(d) in ("failed", "skipped")]
            row["reason"] = f"not run because task(s) {failed_deps} failed"
        elif error and row["status"] == "failed":
            row["reason"] = error
        rows.append(row)
    return rows


def _text_inputs(node: Node, outputs: dict[int, TaskOutput]) -> dict[str, str]:
    """The text each text input of a task received (what a speech task spoke, what was translated)."""
    spec = TASK_TYPES.get(node.task)
    fed: dict[str, str] = {}
    for slot, binding in node.inputs.items():
        if spec is None or spec.inputs[slot].kind != "text":
            continue
        value = bound_text(binding, outputs)
        if value is not None:
            fed[slot] = value if len(value) <= MAX_INPUT_CHARS else value[:MAX_INPUT_CHARS] + " [...]"
    return fed


def bound_text(binding: Binding, outputs: dict[int, TaskOutput]) -> str | None:
    """The text an input received: its literal, or the text of the task output it is bound to."""
    if binding.type == "literal":
        return str(binding.value)
    if binding.type == "output":
        source = outputs.get(binding.task)
        return source.as_text() if source is not None else None
    return None


def fallback_answer(results: list[dict[str, object]], note: str) -> str:
    """An answer without the LLM: every result and every failure, plainly."""
    lines = [note]
    for row in results:
        detail = row.get("text") or row.get("reason") or ", ".join(row.get("files", []))  # type: ignore[arg-type]
        lines.append(f"- task {row['id']} {row['task']} [{row['status']}]: {detail}")
    return "\n".join(lines)


def write_answer(llm: LLM, request: str, results: list[dict[str, object]],
                 history: list[dict[str, str]] | None = None, on_delta: Callable[[str], None] | None = None,
                 limits: str | None = None) -> str:
    """The answer, streamed piece by piece to `on_delta` as the LLM generates it. `limits` (what the
    request needs that nothing here serves) is said as it is, never replaced by a substitute."""
    if not results and limits:
        if on_delta is not None:
            on_delta(limits)
        return limits  # nothing ran: the limits are the whole answer (no generic apology)
    if not results:
        messages = [{"role": "system", "content": IDENTITY + " Answer briefly and helpfully."}, *(history or []),
                    {"role": "user", "content": request}]
        return llm.chat("respond", messages, on_delta=on_delta)
    messages = [
        {"role": "system", "content": f"{IDENTITY}\n{ANSWER_RULES}"},
        {"role": "user", "content": f"Request: {request}\nResults: {json.dumps(results, ensure_ascii=False)}"},
    ]
    answer = llm.chat("respond", messages, on_delta=on_delta)
    for note in (failure_note(results, answer), limits):
        if note:
            if on_delta is not None:
                on_delta("\n\n" + note)
            answer = f"{answer}\n\n{note}"
    return answer


_SAYS_FAILED = re.compile(r"\b(?:fail\w*|could(?: not|n't)|unable|not (?:be )?(?:run|done|completed)|skipped|error)\b",
                          re.I)


def failure_note(results: list[dict[str, object]], answer: str) -> str | None:
    """What failed, said plainly when the written answer does not say it (a small LLM may answer
    the failed part from its own guess): the user must not take a guess for a result."""
    failed = [r for r in results if r.get("status") in ("failed", "skipped")]
    if not failed or _SAYS_FAILED.search(answer):
        return None
    parts = [f"task {r['id']} ({r['task']}) {r['status']}" + (f": {r['reason']}" if r.get("reason") else "")
             for r in failed]
    return "Note: " + "; ".join(parts) + ". Anything the answer says about that part is not from a result."
