"""Stage 4, response: the LLM writes the answer from the results (failures included)."""

from __future__ import annotations

import json
from collections.abc import Callable

from shared.artifacts import artifact_file_name
from shared.llm_client import LLM
from shared.outputs import TaskOutput
from shared.plan import ValidatedPlan
from shared.run_models import NodeInfo

MAX_TEXT_CHARS = 1500


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


def fallback_answer(results: list[dict[str, object]], note: str) -> str:
    """An answer without the LLM: every result and every failure, plainly."""
    lines = [note]
    for row in results:
        detail = row.get("text") or row.get("reason") or ", ".join(row.get("files", []))  # type: ignore[arg-type]
        lines.append(f"- task {row['id']} {row['task']} [{row['status']}]: {detail}")
    return "\n".join(lines)


def write_answer(llm: LLM, request: str, results: list[dict[str, object]],
                 history: list[dict[str, str]] | None = None, on_delta: Callable[[str], None] | None = None) -> str:
    """The answer, streamed piece by piece to `on_delta` as the LLM generates it."""
    if not results:
        messages = [{"role": "system", "content": "You are a helpful assistant."}, *(history or []),
                    {"role": "user", "content": request}]
        return llm.chat("respond", messages, on_delta=on_delta)
    messages = [
        {"role": "system", "content": (
            "You answer a user's request from the results of AI models that ran for it. Start with the direct "
            "answer built from the results, then briefly the workflow (tasks, models). If any task failed or "
            "was skipped, say so and why. Never invent results. Refer to generated files by their names.")},
        {"role": "user", "content": f"Request: {request}\nResults: {json.dumps(results, ensure_ascii=False)}"},
    ]
    return llm.chat("respond", messages, on_delta=on_delta)
