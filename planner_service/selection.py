"""Stage 2, model selection: one candidate -> no LLM call; several -> ONE call for the whole plan."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from shared.errors import LLMError
from shared.llm_client import LLM
from shared.model_catalog import catalog_entry, rank
from shared.plan import ValidatedPlan
from shared.registry import ServedModel

SELECT_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"choices": {"type": "array", "items": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "model": {"type": "string"}, "reason": {"type": "string"}},
        "required": ["id", "model", "reason"]}}},
    "required": ["choices"],
}


class Choice(BaseModel):
    id: int
    model: str
    reason: str = ""


def select_models(llm: LLM | None, request: str, plan: ValidatedPlan,
                  candidates: dict[str, list[ServedModel]], max_fallbacks: int = 2) -> dict[int, str]:
    """Set node.model on every node, and node.fallbacks (the next candidates in rank order, at most
    max_fallbacks, tried when the model fails); return task id -> reason for the choice."""
    reasons: dict[int, str] = {}
    contested: dict[int, list[ServedModel]] = {}
    ranked_ids: dict[int, list[str]] = {}
    for node in plan.nodes:
        ranked = rank(candidates.get(node.task, []), request)
        if not ranked:
            raise LLMError(f"no live worker serves '{node.task}' (task {node.id})")
        # Only models that understand the task's literal args (style, labels, target ...) compete; when
        # none does, all do, and the chosen model's error names the problem.
        ranked = [m for m in ranked if m.accepts(node.params)] or ranked
        node.model = ranked[0].model_id
        ranked_ids[node.id] = [m.model_id for m in ranked]
        if len(ranked) == 1:
            reasons[node.id] = "only candidate" if len(candidates[node.task]) == 1 else "only candidate for its args"
        else:
            contested[node.id] = ranked
            reasons[node.id] = "top-ranked candidate"
    if contested and llm is not None:
        reasons.update(_choose_with_llm(llm, request, plan, contested))
    for node in plan.nodes:
        node.fallbacks = [m for m in ranked_ids[node.id] if m != node.model][:max_fallbacks]
    return reasons


def _option(model: ServedModel) -> str:
    """One candidate as the LLM sees it: id, backend, popularity and a short description."""
    entry = catalog_entry(model.model_id)
    description = model.description or (entry.description if entry else "") or model.backend
    popularity = f", {entry.likes} likes, {entry.downloads} downloads" if entry and not entry.local else ""
    return f"{model.model_id} ({model.backend}{popularity}): {description[:200]}"


def _choose_with_llm(llm: LLM, request: str, plan: ValidatedPlan,
                     contested: dict[int, list[ServedModel]]) -> dict[int, str]:
    lines = []
    for node_id, models in contested.items():
        node = plan.node(node_id)
        options = "; ".join(_option(m) for m in models)
        lines.append(f"task {node_id} ({node.task}, args {node.args}): {options}")
    messages = [
        {"role": "system", "content": "Choose the best model for each task of a plan. Answer JSON only: "
         "{\"choices\": [{\"id\": task id, \"model\": model id from the options, \"reason\": short reason}]}."},
        {"role": "user", "content": f"User request: {request}\n" + "\n".join(lines)},
    ]
    reasons: dict[int, str] = {}
    try:
        raw = llm.chat_json("select", messages, SELECT_SCHEMA)
        choices = [Choice.model_validate(c) for c in raw.get("choices", [])] if isinstance(raw, dict) else []
    except (LLMError, ValidationError) as exc:
        return dict.fromkeys(contested, f"top-ranked (selection call failed: {exc})")
    for choice in choices:
        offered = contested.get(choice.id)
        if offered is None:
            continue
        if choice.model in {m.model_id for m in offered}:
            plan.node(choice.id).model = choice.model
            reasons[choice.id] = choice.reason or "chosen by the LLM"
        else:
            reasons[choice.id] = f"top-ranked (LLM chose '{choice.model}', not a candidate)"
    return reasons
