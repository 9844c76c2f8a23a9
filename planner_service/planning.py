"""Stage 1, task planning: the LLM turns a request into a validated DAG (one repair round)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from planner_service.demo_retrieval import pick_demos
from planner_service.plan_checks import normalise
from planner_service.plan_cues import request_problems
from shared.catalog import TASK_TYPES, plannable
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
PLAN_MAX_TOKENS = 900  # a plan of 8 tasks with quoted text fits; a looping generation is cut off here
PLAN_MAX_ITEMS = 12  # constrained output: more tasks than any request here needs, well under MAX_TASKS


def plan_schema(available: set[str]) -> dict[str, object]:
    """PLAN_SCHEMA narrowed to the offered task types: each task object is one of the served types
    with exactly its own arg names (input slots and optional args), so a grammar-constrained
    endpoint cannot write an unknown task type or an arg name the task does not take."""
    variants: list[dict[str, object]] = []
    for name in sorted(available):
        spec = TASK_TYPES.get(name)
        if spec is None:
            continue
        props = {slot: {"type": "string"} for slot in [*spec.inputs, *spec.params]}
        variants.append({
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "task": {"const": name},
                "dep": {"type": "array", "items": {"type": "integer"}},
                "args": {"type": "object", "properties": props,
                         "required": [n for n, s in spec.inputs.items() if s.required],
                         "additionalProperties": False},
            },
            "required": ["id", "task", "dep", "args"],
        })
    if not variants:
        return PLAN_SCHEMA
    return {"type": "object",
            "properties": {"tasks": {"type": "array", "items": {"anyOf": variants}, "maxItems": PLAN_MAX_ITEMS}},
            "required": ["tasks"]}

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
        "- One task for each thing the user asks for, in the order asked. A step that works on an earlier "
        "step's result (then, after that, the translated text, the summary, the answer) takes that task's "
        "<GENERATED>-N, not the original text.\n"
        "- Use only files the request names or attaches; never invent a file name.\n"
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
    for demo_request, demo_plan in pick_demos(_user_message(text, uploads), available):
        messages.append({"role": "user", "content": demo_request})
        messages.append({"role": "assistant", "content": json.dumps({"tasks": demo_plan})})
    if history:
        messages.append({"role": "system", "content": "Earlier turns of this conversation follow. Files they "
                         "name (uploads and generated files) can be used as args by name."})
        messages += history
    messages.append({"role": "user", "content": _user_message(text, uploads)})
    return messages


def plan_request(llm: LLM, text: str, uploads: Mapping[str, ArtifactRef], available: set[str],
                 history: list[dict[str, str]] | None = None,
                 on_delta: Callable[[str], None] | None = None,
                 latest_files: Mapping[str, str] | None = None, earlier_text: str | None = None) -> ValidatedPlan:
    """Ask the LLM for a plan, fix its no-judgement slips (plan_checks.normalise), and send what is
    still wrong (invalid, or missing part of the request) back once; then PlanError, or the first
    valid plan when only the repair round failed. `earlier_text`: what the previous turn read out
    of a file, for a text input that points nowhere."""
    available = plannable(available)
    messages = plan_messages(text, uploads, available, history)
    schema = plan_schema(available)
    llm.begin("plan")  # one deadline for this request's planning, its repair round included
    problems: list[str] = []
    first_had_tasks = False
    valid: ValidatedPlan | None = None  # a valid first plan that misses part of the request
    for attempt in range(2):
        try:
            # the first plan streams to on_delta (tasks start early); a repaired one does not
            raw = llm.chat_json("plan", messages, schema, on_delta=on_delta if attempt == 0 else None,
                                max_tokens=PLAN_MAX_TOKENS)
            reply_text = json.dumps(raw)
            has_tasks = bool(raw.get("tasks") if isinstance(raw, dict) else raw)
            if attempt == 1 and first_had_tasks and not has_tasks:
                # Dropping every task is not a repair: it would silently turn the request into chat.
                raise PlanError([f"the repair round dropped all tasks instead of fixing: {'; '.join(problems)}"])
            first_had_tasks = has_tasks
            plan = validate_plan(normalise(parse_plan_json(raw), uploads, text, latest_files, available, earlier_text), uploads, available)
            left = request_problems(text, plan, uploads, available)
            if attempt == 1 and valid is not None and len(left) >= len(problems):
                return valid  # the "repair" fixed none of what it was asked to: the first plan was no worse
            problems = left if attempt == 0 else []
            if not problems:
                return plan
            valid = plan
        except LLMOutputError as exc:  # endpoint failures (LLMError) are not repairable: they propagate
            problems = [str(exc)]
            reply_text = "(unparseable)"
        except PlanError as exc:
            if valid is not None:
                return valid
            problems = exc.problems
        if attempt == 0:
            verdict = "That plan misses part of the request" if valid is not None else "That plan is invalid"
            messages += [
                {"role": "assistant", "content": reply_text},
                {"role": "user", "content": f"{verdict}: " + "; ".join(problems)
                 + ". Answer again with the whole plan, corrected (fix only these problems), JSON only."},
            ]
    if valid is not None:
        return valid
    raise PlanError([f"the planner produced an invalid plan twice: {'; '.join(problems)}"])
