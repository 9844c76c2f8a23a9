"""The plan and response stages as they run on the LLM queue (called by workers/tasks.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery import Celery

from planner_service.direct_answer import direct_answer
from planner_service.limits import limits_text, unserved_needs
from planner_service.plan_stream import EarlyStarts, remap_onto_early
from planner_service.planning import plan_request
from planner_service.responding import describe_results, fallback_answer, write_answer
from planner_service.reuse import earlier_texts, is_reused, reuse_earlier_texts, texts_of_run
from planner_service.selection import choose_with_llm, rank_models
from shared.artifacts import artifact_file_name
from shared.conversation import ConversationStore, EarlierText, Turn
from shared.dispatch import publish_nodes, publish_respond
from shared.errors import HgqError, LLMCancelled, LLMError, PlanError
from shared.llm_backlog import LLMBacklog
from shared.llm_client import LLM
from shared.outputs import ArtifactRef, TaskOutput
from shared.plan import validate_plan
from shared.redis_conn import text_redis
from shared.registry import candidates, live_workers, model_routes
from shared.run_models import RequestCreate
from shared.run_store import RunStore
from shared.settings import get_settings

log = logging.getLogger(__name__)


def _run(run_id: str) -> RunStore:
    settings = get_settings()
    return RunStore(text_redis(settings.redis_url), settings.key_prefix, run_id, settings.run_ttl_s)


def conversation(conversation_id: str | None) -> ConversationStore | None:
    if conversation_id is None:
        return None
    s = get_settings()
    return ConversationStore(text_redis(s.redis_url), s.key_prefix, conversation_id, s.run_ttl_s)


def _llm(run: RunStore) -> LLM:
    """The LLM as a run's stages use it: usage counted on the run, the stream closed when the run
    is cancelled, and the run told how many requests are ahead of it at the endpoint."""
    s = get_settings()
    backlog = LLMBacklog.from_settings(text_redis(s.redis_url), s)

    def waiting(stage: str, ahead: int) -> None:
        run.event("waiting", stage=stage, ahead=ahead)

    return LLM(s, on_usage=run.add_usage, should_stop=run.is_cancelled, backlog=backlog, on_wait=waiting)


def latest_files(turns: list[Turn], new: Mapping[str, ArtifactRef]) -> dict[str, str]:
    """kind -> the previous turn's file of that kind (its generated output first, else its upload)
    for the kinds this turn attaches nothing of: what "that", "it", "the picture" refer to."""
    if not turns:
        return {}
    out: dict[str, str] = {}
    for name, ref in sorted(turns[-1].files.items(), key=lambda item: item[0].startswith("task")):
        out[ref.kind] = name  # generated files (task<N>-...) sort last, so they win
    attached = {ref.kind for ref in new.values()}
    return {kind: name for kind, name in out.items() if kind not in attached}


def run_plan_stage(app: Celery, run_id: str) -> dict[str, Any]:
    run = _run(run_id)
    existing = run.plan()
    streamed = existing is not None and run.streaming()  # redelivered mid-stream: plan again, keep what started
    if existing is not None and not streamed:  # redelivered after the DAG was written: re-announce what is queued
        publish_nodes(app, run_id, existing, run.init_dag(existing, {}))
        return {"status": "replayed"}
    meta = run.meta()
    if "response" in meta:
        return {"status": "finished"}
    if run.is_cancelled():
        run.finish("cancelled", "The request was cancelled before it was planned.")
        return {"status": "cancelled"}
    request = run.request()
    run.set_meta(status="planning")
    run.event("planning")
    settings = get_settings()
    workers = live_workers(text_redis(settings.redis_url), settings.key_prefix)
    served, routes = candidates(workers), model_routes(workers)
    available = set(served)
    conv = conversation(request.conversation_id)
    try:
        if conv is not None and conv.owner() not in (None, request.user):
            raise HgqError(f"conversation {request.conversation_id} belongs to another user")
        uploads = {**(conv.files() if conv else {}), **request.uploads}
        llm = _llm(run) if request.plan is None or _needs_llm(request.plan, served) else None
        turns = conv.turns() if conv and request.plan is None else []
        earlier = earlier_texts(turns)  # what earlier turns read out of their files
        early = EarlyStarts(app, run, request.text, uploads, available, served, settings.max_fallbacks,
                            existing if streamed else None, routes, skip=lambda node: is_reused(node, earlier))
        if request.plan is not None:
            plan = validate_plan(request.plan, uploads, available)
        else:
            assert llm is not None
            history = conv.history(settings.conversation_max_tokens, turns) if conv else None
            plan = plan_request(llm, request.text, uploads, available, history,
                                on_delta=early.on_delta if settings.stream_plan else None,
                                latest_files=latest_files(turns, request.uploads),
                                earlier_text=turns[-1].texts[-1].text if turns and turns[-1].texts else None)
            plan = reuse_earlier_texts(plan, earlier, request.text)
        reasons, contested = rank_models(request.text, plan, served, settings.max_fallbacks)
    except LLMCancelled:
        run.finish("cancelled", "The request was cancelled while it was being planned.")
        return {"status": "cancelled"}
    except HgqError as exc:
        has_image = any(ref.kind == "image" for ref in request.uploads.values())
        needs = unserved_needs(request.text, available, has_image) if isinstance(exc, PlanError) else []
        # a request for what nothing here serves gets the honest limit, not the planner's slip
        run.fail_before_plan(str(exc), llm_failed=isinstance(exc, LLMError),
                             answer=limits_text(needs) if needs else None)
        return {"status": "failed", "error": str(exc)}
    plan.routes = routes
    complete = False
    if early.plan.nodes:  # tasks that started while the plan streamed keep their ids
        plan, kept, dropped = remap_onto_early(plan, early.plan)
        reasons, contested = rank_models(request.text, plan, served, settings.max_fallbacks)
        step = run.finalize_streamed(plan, reasons, kept, dropped)
        ready, complete = step.ready, step.finalize  # (every task may have run while the plan streamed)
    else:
        ready = run.init_dag(plan, reasons)
    # A task whose model is certain starts now; the LLM chooses among close candidates meanwhile
    # (a dependent task published before that choice is written runs on the top-ranked model).
    publish_nodes(app, run_id, plan, [n for n in ready if n not in contested])
    if contested and llm is not None:
        reasons.update(choose_with_llm(llm, request.text, plan, contested))
        run.update_selection(plan, reasons)
    publish_nodes(app, run_id, plan, [n for n in ready if n in contested])
    if not plan.nodes or complete:
        publish_respond(app, run_id)
    return {"status": "planned", "nodes": len(plan.nodes)}


def _needs_llm(plan_tasks: list[Any], served: dict[str, list[Any]]) -> bool:
    """An explicit plan needs the LLM only to choose among several candidate models."""
    return any(len(served.get(t.task, [])) > 1 for t in plan_tasks)


def run_respond_stage(app: Celery, run_id: str) -> dict[str, Any]:
    run = _run(run_id)
    meta = run.meta()
    if "response" in meta:  # exactly-once effect: the first writer won
        return {"status": "already-responded"}
    plan = run.plan()
    if plan is None:
        return {"status": "no-plan"}
    # (a task that started early and was left out of the final plan is not part of the run)
    states = {n: s for n, s in run.node_states().items() if n in plan.by_id()}
    outputs = run.outputs()  # read once: the results, the direct answer and the turn all use them
    results = describe_results(plan, states, outputs, run.infos())
    if meta.get("cancel") == "1":
        run.finish("cancelled", fallback_answer(results, "The request was cancelled. What had finished:"))
        return {"status": "cancelled"}
    problems = [n for n, s in states.items() if s != "succeeded"]
    status = "failed" if problems else "succeeded"
    run.set_meta(status="responding")
    error = None
    request = run.request()
    conv = conversation(request.conversation_id)
    history = conv.history(get_settings().conversation_max_tokens) if conv else None
    def stream_piece(piece: str) -> None:
        run.event("answer", delta=piece)

    settings = get_settings()
    served = set(candidates(live_workers(text_redis(settings.redis_url), settings.key_prefix)))
    has_image = any(ref.kind == "image" for ref in request.uploads.values()) or any(
        binding.type == "upload" and binding.ref.kind == "image" for n in plan.nodes for binding in n.inputs.values())
    needs = unserved_needs(request.text, served | {n.task for n in plan.nodes}, has_image)
    limits = limits_text(needs) if needs else None
    direct = direct_answer(request.text, plan, states, outputs) \
        if settings.direct_answers and limits is None else None
    try:
        if direct is not None:
            answer = direct
            stream_piece(answer)
        else:
            answer = write_answer(_llm(run), request.text, results, history, on_delta=stream_piece, limits=limits)
    except LLMCancelled:
        run.finish("cancelled", fallback_answer(results, "The request was cancelled. What had finished:"))
        return {"status": "cancelled"}
    except LLMError as exc:
        status, error = "failed", f"response stage failed: {exc}"
        run.set_meta(llm_failed="respond")
        answer = fallback_answer(results, "The answer could not be written by the LLM; here are the raw results:")
    if problems and error is None:
        error = f"tasks {sorted(problems)} did not succeed"
    if run.finish(status, answer, error) and conv is not None:
        conv.add_turn(_turn(run_id, request, answer, outputs, texts_of_run(plan, states, outputs)))
    return {"status": status, **({"error": error} if error else {})}


def _turn(run_id: str, request: RequestCreate, answer: str, outputs: Mapping[int, TaskOutput],
          texts: list[EarlierText]) -> Turn:
    """The turn as later turns see it: every upload, every generated file by its name, and what
    its reading tasks read out of files."""
    files = {name: ref for name, ref in request.uploads.items() if "/" not in name}
    for node_id, out in outputs.items():
        for ref in out.artifacts:
            files[artifact_file_name(node_id, ref)] = ref
    return Turn(run_id=run_id, user=request.user, request=request.text, answer=answer, files=files, texts=texts)
