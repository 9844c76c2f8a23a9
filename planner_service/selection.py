"""Stage 2, model selection: ranked without the LLM (popularity + word overlap with the request);
ONE LLM call for the whole plan only where close candidates really differ for this request."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from shared.errors import LLMError
from shared.llm_client import LLM
from shared.model_catalog import catalog_entry, describe, ranked_scores, similarity
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


# Two candidates whose scores (popularity + 2 x word overlap with the request) are this close
# are a real choice for the LLM, unless the request matches both equally (nothing in it tells
# them apart): then they are interchangeable for this request and rank decides.
CLOSE_SCORE = 0.25
SAME_OVERLAP = 0.01


def rank_models(request: str, plan: ValidatedPlan, candidates: dict[str, list[ServedModel]],
                max_fallbacks: int = 2) -> tuple[dict[int, str], dict[int, list[ServedModel]]]:
    """Set node.model (the top-ranked fitting candidate) and node.fallbacks on every node, without
    the LLM. Returns task id -> reason, and the nodes whose close candidates the LLM should
    choose between (with those candidates, best first)."""
    reasons: dict[int, str] = {}
    contested: dict[int, list[ServedModel]] = {}
    for node in plan.nodes:
        offered = candidates.get(node.task, [])
        if not offered:
            raise LLMError(f"no live worker serves '{node.task}' (task {node.id})")
        # Only models that understand the task's literal args (style, labels, target ...) compete; when
        # none does, all do, and the chosen model's error names the problem.
        fitting = [m for m in offered if m.accepts(node.params)] or offered
        scored = ranked_scores(fitting, request)
        ranked = [m for m, _ in scored]
        node.model = ranked[0].model_id
        node.fallbacks = [m.model_id for m in ranked[1:]][:max_fallbacks]
        if len(ranked) == 1:
            reasons[node.id] = "only candidate" if len(offered) == 1 else "only candidate for its args"
            continue
        top = scored[0][1]
        close = [(m, sc) for m, sc in scored if top - sc < CLOSE_SCORE]
        if len(close) == 1:
            reasons[node.id] = "top-ranked candidate (clearly ahead for this request)"
            continue
        overlaps = [similarity(request, describe(m)) for m, _ in close]
        if max(overlaps) - min(overlaps) < SAME_OVERLAP:
            reasons[node.id] = "top-ranked of interchangeable candidates (the request tells them apart in nothing)"
            continue
        contested[node.id] = [m for m, _ in close]
        reasons[node.id] = "top-ranked candidate"
    return reasons, contested


def select_models(llm: LLM | None, request: str, plan: ValidatedPlan,
                  candidates: dict[str, list[ServedModel]], max_fallbacks: int = 2) -> dict[int, str]:
    """Rank every node's candidates; ask the LLM (one call for the whole plan) only where close
    candidates really differ for this request. Returns task id -> reason for the choice."""
    reasons, contested = rank_models(request, plan, candidates, max_fallbacks)
    if contested and llm is not None:
        reasons.update(choose_with_llm(llm, request, plan, contested))
    return reasons


def _option(model: ServedModel) -> str:
    """One candidate as the LLM sees it: id, backend, popularity and a short description."""
    entry = catalog_entry(model.model_id)
    description = model.description or (entry.description if entry else "") or model.backend
    popularity = f", {entry.likes} likes, {entry.downloads} downloads" if entry and not entry.local else ""
    return f"{model.model_id} ({model.backend}{popularity}): {description[:200]}"


def choose_with_llm(llm: LLM, request: str, plan: ValidatedPlan,
                    contested: dict[int, list[ServedModel]]) -> dict[int, str]:
    """One LLM call choosing among the close candidates of every contested node; sets node.model
    (and keeps the others as fallbacks). Falls back to the ranking when the call fails."""
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
            node = plan.node(choice.id)
            if choice.model != node.model:  # the ranked top becomes the first fallback; as many as before
                keep = len(node.fallbacks)
                node.fallbacks = [m for m in [node.model or "", *node.fallbacks] if m and m != choice.model][:keep]
            node.model = choice.model
            reasons[choice.id] = choice.reason or "chosen by the LLM"
        else:
            reasons[choice.id] = f"top-ranked (LLM chose '{choice.model}', not a candidate)"
    return reasons
