"""Stage 1, task planning: the LLM turns a request into a validated DAG (one repair round)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from shared.catalog import TASK_TYPES
from shared.errors import LLMOutputError, PlanError
from shared.llm_client import LLM
from shared.outputs import ArtifactRef
from shared.plan import ValidatedPlan, parse_plan_json, validate_plan

PLAN_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "task": {"type": "string"},
                    "dep": {"type": "array", "items": {"type": "integer"}},
                    "args": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "required": ["id", "task", "dep", "args"],
            },
        }
    },
    "required": ["tasks"],
}

_DEMOS: list[tuple[str, list[dict[str, object]]]] = [
    ("Transcribe memo.wav, summarise it and read the summary aloud. [files: memo.wav (audio)]", [
        {"id": 0, "task": "automatic-speech-recognition", "dep": [-1], "args": {"audio": "memo.wav"}},
        {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}},
        {"id": 2, "task": "text-to-speech", "dep": [1], "args": {"text": "<GENERATED>-1"}},
    ]),
    ("What text is written in a.png and in b.png? [files: a.png (image), b.png (image)]", [
        {"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "a.png"}},
        {"id": 1, "task": "image-to-text", "dep": [-1], "args": {"image": "b.png"}},
    ]),
    ("Is the review in scan.png positive? Also read it aloud. [files: scan.png (image)]", [
        {"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "scan.png"}},
        {"id": 1, "task": "text-classification", "dep": [0], "args": {"text": "<GENERATED>-0"}},
        {"id": 2, "task": "text-to-speech", "dep": [0], "args": {"text": "<GENERATED>-0"}},
    ]),
    ("Answer the question written on card.png using what is said in talk.wav. "
     "[files: card.png (image), talk.wav (audio)]", [
        {"id": 0, "task": "automatic-speech-recognition", "dep": [-1], "args": {"audio": "talk.wav"}},
        {"id": 1, "task": "image-to-text", "dep": [-1], "args": {"image": "card.png"}},
        {"id": 2, "task": "question-answering", "dep": [0, 1],
         "args": {"text": "<GENERATED>-0", "question": "<GENERATED>-1"}},
    ]),
    ("Read menu.jpg and translate it into Spanish. [files: menu.jpg (image)]", [
        {"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "menu.jpg"}},
        {"id": 1, "task": "translation", "dep": [0], "args": {"text": "<GENERATED>-0", "target": "Spanish"}},
    ]),
    ("Hello! How are you today?", []),
]


def system_prompt(available: set[str]) -> str:
    lines = [TASK_TYPES[name].line() for name in sorted(available) if name in TASK_TYPES]
    return (
        "You are the task planner of an AI system. Split the user's request into tasks that expert models run.\n"
        "Answer with JSON only: {\"tasks\": [{\"id\": int, \"task\": str, \"dep\": [int], \"args\": {slot: str}}]}.\n"
        "Rules:\n"
        "- Use only these task types (name(input slots) -> output: purpose):\n  " + "\n  ".join(lines) + "\n"
        "- ids start at 0. dep lists the ids whose outputs this task needs; [-1] when none.\n"
        "- An arg is literal text, the name of an uploaded file, or \"<GENERATED>-N\" for the output of task N.\n"
        "- Image and audio args must name an uploaded file or a <GENERATED>-N of a task that produces that kind.\n"
        "- Use only the arg names listed for a task (input slots and its optional args).\n"
        "- Plan only what the user asked for. If no task is needed (plain conversation), answer {\"tasks\": []}."
    )


def _user_message(text: str, uploads: Mapping[str, ArtifactRef]) -> str:
    if not uploads:
        return text
    files = ", ".join(f"{name} ({ref.kind})" for name, ref in uploads.items() if "/" not in name)
    return f"{text} [files: {files}]"


def plan_messages(text: str, uploads: Mapping[str, ArtifactRef], available: set[str],
                  history: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt(available)}]
    for demo_request, demo_plan in _DEMOS:
        if all(t["task"] in available for t in demo_plan):
            messages.append({"role": "user", "content": demo_request})
            messages.append({"role": "assistant", "content": json.dumps({"tasks": demo_plan})})
    if history:
        messages.append({"role": "system", "content": "Earlier turns of this conversation follow. Files they "
                         "name (uploads and generated files) can be used as args by name."})
        messages += history
    messages.append({"role": "user", "content": _user_message(text, uploads)})
    return messages


def plan_request(llm: LLM, text: str, uploads: Mapping[str, ArtifactRef], available: set[str],
                 history: list[dict[str, str]] | None = None) -> ValidatedPlan:
    """Ask the LLM for a plan; on an invalid one, send the problems back once; then PlanError."""
    messages = plan_messages(text, uploads, available, history)
    problems: list[str] = []
    first_had_tasks = False
    for attempt in range(2):
        try:
            raw = llm.chat_json("plan", messages, PLAN_SCHEMA)
            reply_text = json.dumps(raw)
            has_tasks = bool(raw.get("tasks") if isinstance(raw, dict) else raw)
            if attempt == 1 and first_had_tasks and not has_tasks:
                # Dropping every task is not a repair: it would silently turn the request into chat.
                raise PlanError([f"the repair round dropped all tasks instead of fixing: {'; '.join(problems)}"])
            first_had_tasks = has_tasks
            return validate_plan(parse_plan_json(raw), uploads, available)
        except LLMOutputError as exc:  # endpoint failures (LLMError) are not repairable: they propagate
            problems = [str(exc)]
            reply_text = "(unparseable)"
        except PlanError as exc:
            problems = exc.problems
        if attempt == 0:
            messages += [
                {"role": "assistant", "content": reply_text},
                {"role": "user", "content": "That plan is invalid: " + "; ".join(problems)
                 + ". Answer again with the same tasks, corrected (fix only these problems), JSON only."},
            ]
    raise PlanError([f"the planner produced an invalid plan twice: {'; '.join(problems)}"])
