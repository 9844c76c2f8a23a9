"""The OpenAI-compatible facade: `/v1/models` and `/v1/chat/completions` (streamed or not), a
conversation's messages turned into one hgq request with its files."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from planner_service.api import side_prompts
from planner_service.api.chat_progress import ChatProgress
from planner_service.api.errors import ApiError, json_body
from planner_service.api.schemas import MAX_TEXT, AudioPart, ChatIn, ChatMessage, ImagePart, TextPart, Upload
from planner_service.api.service import Service, User
from planner_service.api.signed_urls import UrlSigner
from planner_service.api.sse import SSE_HEADERS, sse_frame
from planner_service.api.text_blocks import without_blocks
from planner_service.api.uploads import data_url_bytes, decode_b64
from shared.run_models import RunPublic


def register(app: FastAPI, svc: Service) -> None:
    api_settings = svc.api

    # --- OpenAI-compatible ---------------------------------------------------------------------
    model_card = {"id": api_settings.api_model_name, "object": "model", "created": 1700000000, "owned_by": "hgq"}

    @app.get("/v1/models", tags=["openai"], summary="The models this API serves (OpenAI format)")
    def list_models(user: User) -> dict[str, Any]:
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{model_id}", tags=["openai"], summary="One model (OpenAI format)")
    def get_model(model_id: str, user: User) -> dict[str, Any]:
        if model_id != api_settings.api_model_name:
            raise ApiError(404, f"model {model_id!r} does not exist; use {api_settings.api_model_name!r}",
                           "not_found_error", "model")
        return model_card

    chat_doc = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ChatIn"}}}}}

    @app.post("/v1/chat/completions", tags=["openai"], summary="OpenAI-compatible chat completion (stream or not)",
              openapi_extra=chat_doc)
    async def chat_completions(request: Request, user: User) -> Response:
        body = json_body(await request.body(), ChatIn)
        if body.model != api_settings.api_model_name:
            raise ApiError(404, f"model {body.model!r} does not exist; use {api_settings.api_model_name!r}",
                           "not_found_error", "model")
        if body.hgq_plan is None and (side := _side_prompt(body)) is not None:
            return await _side_completion(svc, body, *side, api_settings.api_model_name)
        text, uploads, urls = _chat_request(body)
        run_id, _ = await run_in_threadpool(svc.submit, user, text, body.hgq_plan, body.request_id, uploads, urls,
                                            None, "chat")
        created = int(time.time())
        cid = f"chatcmpl-{run_id}"
        model = api_settings.api_model_name
        if not body.stream:
            deadline = time.monotonic() + api_settings.api_chat_timeout_s
            async for item in svc.events(run_id, "0-0", request):
                if time.monotonic() > deadline:
                    await run_in_threadpool(svc.client.cancel, run_id)
                    raise ApiError(504, f"no answer after {api_settings.api_chat_timeout_s:.0f}s; "
                                        f"request {run_id} was cancelled", "timeout_error", None)
                if item is not None and item[1].get("type") == "done":
                    break
            view = await run_in_threadpool(svc.client.view, run_id)
            files = await run_in_threadpool(_artifact_markdown, view, svc.signer, str(request.base_url))
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": (view.response or view.error or "") + files},
                             "finish_reason": "stop"}],
                "usage": _usage(view), "hgq": _hgq_extra(view)})

        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            return sse_frame({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

        async def stream() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            progress = ChatProgress()
            streamed = False
            idle_since = time.monotonic()
            async for item in svc.events(run_id, "0-0", request):
                if item is None:
                    if time.monotonic() - idle_since >= api_settings.api_sse_ping_s:
                        idle_since = time.monotonic()
                        yield ": ping\n\n"
                    continue
                idle_since = time.monotonic()
                _, ev = item
                kind = ev.get("type")
                if kind == "answer" and ev.get("delta"):  # token events, when the respond stage streams
                    streamed = True
                    yield chunk({"content": str(ev["delta"])})
                elif kind == "done":
                    break
                elif (line := progress.line(ev)) is not None:  # shown by reasoning-aware chat UIs
                    yield chunk({"reasoning_content": line})
            view = await run_in_threadpool(svc.client.view, run_id)
            if not streamed:
                for piece in _pieces(view.response or view.error or ""):
                    yield chunk({"content": piece})
            if files := await run_in_threadpool(_artifact_markdown, view, svc.signer, str(request.base_url)):
                yield chunk({"content": files})
            yield chunk({}, "stop", hgq=_hgq_extra(view))
            if include_usage:
                yield sse_frame({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                            "choices": [], "usage": _usage(view)})
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


def _text_of(msg: ChatMessage) -> str:
    if isinstance(msg.content, str):
        return msg.content
    return "\n".join(p.text for p in msg.content or [] if isinstance(p, TextPart))


def _side_prompt(body: ChatIn) -> tuple[str, str] | None:
    """(kind, last user text) when the last user message is a chat UI's side prompt."""
    last = next((m for m in reversed(body.messages) if m.role == "user"), None)
    text = _text_of(last) if last is not None else ""
    kind = side_prompts.side_prompt_kind(text)
    return (kind, text) if kind else None


async def _side_completion(svc: Service, body: ChatIn, kind: str, last: str, model: str) -> Response:
    """A side prompt's completion: one LLM call on the LLM queue, no run, no quota charge."""
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": _text_of(m)}
                for m in body.messages if m.role in ("system", "developer", "user", "assistant")]
    content = await run_in_threadpool(side_prompts.answer, svc.client.app, kind, messages, last)
    cid, created = f"chatcmpl-side-{uuid.uuid4().hex[:16]}", int(time.time())
    extra = {"hgq": {"side_prompt": kind}, "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
    if not body.stream:
        return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": model,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                          "finish_reason": "stop"}], **extra})

    def frame(delta: dict[str, Any], finish: str | None) -> str:
        return sse_frame({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    async def stream() -> AsyncIterator[str]:
        yield frame({"role": "assistant", "content": content}, None)
        yield frame({}, "stop")
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


# Open WebUI lists a message's files in a block before its text; the block is not the user's words,
# but it holds the files' own names, which the images of that message then take (in order).
_FILE_TAG = re.compile(r"<file\b[^<>]{0,2000}>", re.I)
_IMAGE_TYPE = re.compile(r'\bcontent_type="image/', re.I)
_NAME = re.compile(r'\bname="([^"]{1,200})"')


# hgq's own file links in an earlier answer (signed URLs a chat UI sends back as history): the label
# says what the file was; the URL is only a long, live link that the planner cannot use
_OWN_FILE_LINK = re.compile(r"!?\[([^\]\n]{0,200})\]\((?:https?://[^\s()\[\]]{0,500})?/v1/artifacts/[0-9a-f]{64}"
                            r"[^\s()\[\]]{0,500}\)")


def _without_attached(texts: list[str]) -> tuple[list[str], list[str]]:
    """The texts without attached-files blocks, and the image names those blocks list (made safe
    and unique where the files are stored, as any upload's name)."""
    kept: list[str] = []
    names: list[str] = []
    for text in texts:
        rest, lists = without_blocks(text, "attached_files")
        kept.append(rest)
        for tag in (m.group(0) for inner in lists for m in _FILE_TAG.finditer(inner)):
            if _IMAGE_TYPE.search(tag) and (name := _NAME.search(tag)):
                names.append(name.group(1))
    return kept, names


def _chat_request(body: ChatIn) -> tuple[str, list[Upload], list[tuple[str, str | None, str]]]:
    """The text (last user turn, with earlier turns as context) and the media of the conversation."""
    last_user = max((i for i, m in enumerate(body.messages) if m.role == "user"), default=-1)
    if last_user < 0:
        raise ApiError(422, "messages: needs at least one user message", field="messages")
    uploads: list[Upload] = []
    urls: list[tuple[str, str | None, str]] = []
    counts = {"image": 0, "audio": 0}
    turns: list[tuple[int, str, str]] = []  # (message index, role, text)
    for i, msg in enumerate(body.messages):
        parts = msg.content if isinstance(msg.content, list) else []
        texts, given_names = _without_attached(
            [msg.content] if isinstance(msg.content, str) else [p.text for p in parts if isinstance(p, TextPart)])
        for j, part in enumerate(parts):
            field = f"messages[{i}].content[{j}]"
            if isinstance(part, ImagePart):
                counts["image"] += 1
                name = given_names.pop(0) if given_names else f"image{counts['image']}"
                url = part.image_url.url
                if url.startswith("data:"):
                    uploads.append(Upload(name=name, data=data_url_bytes(url, field + ".image_url.url"), field=field))
                else:
                    urls.append((url, name, field + ".image_url.url"))
            elif isinstance(part, AudioPart):
                counts["audio"] += 1
                fmt = re.sub(r"[^a-z0-9]", "", part.input_audio.format.lower())[:5] or "wav"
                uploads.append(Upload(name=f"audio{counts['audio']}.{fmt}",
                                      data=decode_b64(part.input_audio.data, field + ".input_audio.data"),
                                      field=field))
        if msg.role == "assistant":
            texts = [_OWN_FILE_LINK.sub(lambda m: f"[{m.group(1)}]", t) for t in texts]
        if msg.role != "tool":
            turns.append((i, msg.role, "\n".join(t for t in texts if t).strip()))
    last = next(t for i, _, t in turns if i == last_user)
    if not last and (uploads or urls):
        last = "Describe the attached files."
    if not last:
        raise ApiError(422, f"messages[{last_user}].content: the last user message has no text",
                       field=f"messages[{last_user}].content")
    context = [f"{role}: {t}" for i, role, t in turns if i < last_user and t]
    text = last
    if context:
        budget = MAX_TEXT - len(last) - 60
        kept: list[str] = []
        for line in reversed(context):
            if budget - len(line) < 0:
                break
            kept.insert(0, line)
            budget -= len(line) + 1
        if kept:
            text = "Conversation so far:\n" + "\n".join(kept) + f"\n\nRequest: {last}"
    return text[:MAX_TEXT], uploads, urls


def _pieces(text: str, size: int = 24) -> list[str]:
    words = re.findall(r"\S+\s*|\s+", text)
    return ["".join(words[i:i + size]) for i in range(0, len(words), size)] or [""]


def _usage(view: RunPublic) -> dict[str, int]:
    prompt = sum(u.prompt_tokens for u in view.usage.values())
    completion = sum(u.completion_tokens for u in view.usage.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _artifact_markdown(view: RunPublic, signer: UrlSigner, base: str) -> str:
    """The run's files as markdown after the answer: images inline, audio and others as links, each
    with a signed URL a browser can open without a key."""
    lines = []
    for a in view.artifacts:
        url = signer.url(base, a.id)
        label = f"{a.kind} from task {a.task}"
        lines.append(f"![{label}]({url})" if a.kind == "image" else f"[{label} ({a.mime})]({url})")
    return "\n\n" + "\n\n".join(lines) if lines else ""


def _hgq_extra(view: RunPublic) -> dict[str, Any]:
    return {"request_id": view.request_id, "status": view.status, "error": view.error,
            "tasks": {k: {"task": t.task, "status": t.status, "model": t.model} for k, t in view.tasks.items()},
            "artifacts": [{"id": a.id, "kind": a.kind, "mime": a.mime, "url": f"/v1/artifacts/{a.id}"}
                          for a in view.artifacts]}
