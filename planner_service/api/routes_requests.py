"""Routes of requests: submit (JSON or multipart), list, read, cancel, and the run's event stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from planner_service.api.errors import ApiError, json_body
from planner_service.api.schemas import CONVERSATION_ID, MAX_TEXT, RUN_ID, STREAM_ID, Accepted, RequestIn, Upload
from planner_service.api.service import Service, User
from planner_service.api.sse import SSE_HEADERS, sse_frame
from planner_service.api.uploads import data_url_bytes, decode_b64
from shared.errors import PlanError
from shared.keys import run_keys
from shared.plan import parse_plan_json
from shared.run_models import FINAL_RUN_STATUSES, RunPublic


def register(app: FastAPI, svc: Service) -> None:
    settings, api_settings = svc.settings, svc.api

    # --- requests ------------------------------------------------------------------------------
    body_doc = {
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RequestIn"}},
            "multipart/form-data": {"schema": {"type": "object", "required": ["text"], "properties": {
                "text": {"type": "string"}, "plan": {"type": "string", "description": "plan JSON"},
                "request_id": {"type": "string"}, "conversation_id": {"type": "string"},
                "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        }}}

    @app.post("/v1/requests", status_code=202, response_model=Accepted, openapi_extra=body_doc,
              tags=["requests"], summary="Submit a request (JSON, or multipart with files)")
    async def create_request(request: Request, user: User) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        uploads: list[Upload] = []
        urls: list[tuple[str, str | None, str]] = []
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            try:
                form = await request.form(max_files=api_settings.api_max_uploads + 1, max_fields=50)
            except Exception as exc:  # noqa: BLE001 - starlette raises several kinds
                raise ApiError(400, f"malformed multipart body: {exc}", field="body") from exc
            text = form.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ApiError(422, "text: field required (a non-empty string)", field="text")
            if len(text) > MAX_TEXT:
                raise ApiError(422, f"text: at most {MAX_TEXT} characters", field="text")
            raw_plan = form.get("plan")
            plan = None
            if isinstance(raw_plan, str) and raw_plan.strip():
                try:
                    plan = parse_plan_json(raw_plan)
                except PlanError as exc:
                    raise ApiError(422, str(exc), field="plan",
                                   details=[{"field": "plan", "problem": p} for p in exc.problems]) from exc
            request_id = form.get("request_id") or None
            if request_id is not None and (not isinstance(request_id, str) or not RUN_ID.match(request_id)):
                raise ApiError(422, "request_id: 6-64 characters of letters, digits, _ and -", field="request_id")
            conversation_id = form.get("conversation_id") or None
            if conversation_id is not None and (not isinstance(conversation_id, str)
                                                or not CONVERSATION_ID.match(conversation_id)):
                raise ApiError(422, "conversation_id: 1-48 characters of letters, digits, _ and -",
                               field="conversation_id")
            files = [f for key in ("files", "file") for f in form.getlist(key)]
            if len(files) > api_settings.api_max_uploads:
                raise ApiError(413, f"too many files: at most {api_settings.api_max_uploads} per request",
                               field="files")
            for i, f in enumerate(files):
                if isinstance(f, str):
                    raise ApiError(422, "files: expected a file part, got a plain field", field=f"files[{i}]")
                if f.size is not None and f.size > api_settings.api_max_upload_bytes:
                    raise ApiError(413, f"{f.filename}: {f.size} bytes exceeds the limit of "
                                        f"{api_settings.api_max_upload_bytes} bytes", field=f"files[{i}]")
                uploads.append(Upload(name=f.filename or f"file{i}", data=await f.read(), field=f"files[{i}]"))
        elif ctype in ("application/json", ""):
            body = json_body(await request.body(), RequestIn)
            text, plan, request_id, conversation_id = body.text, body.plan, body.request_id, body.conversation_id
            for i, f_in in enumerate(body.files):
                field = f"files[{i}]"
                if (f_in.data is None) == (f_in.url is None):
                    raise ApiError(422, "give exactly one of data (base64) and url", field=field)
                if f_in.url is not None:
                    if f_in.url.startswith("data:"):
                        uploads.append(Upload(name=f_in.name or f"file{i}", data=data_url_bytes(f_in.url, field), field=field))
                    else:
                        urls.append((f_in.url, f_in.name, field))
                else:
                    assert f_in.data is not None
                    uploads.append(Upload(name=f_in.name or f"file{i}", data=decode_b64(f_in.data, field + ".data"),
                                          field=field))
        else:
            raise ApiError(415, f"Content-Type {ctype!r}: send application/json or multipart/form-data",
                           field="Content-Type")
        run_id, _ = await run_in_threadpool(svc.submit, user, text, plan, request_id, uploads, urls,
                                            conversation_id)
        body_out = Accepted(request_id=run_id, status="accepted", status_url=f"/v1/requests/{run_id}",
                            events_url=f"/v1/requests/{run_id}/events")
        return JSONResponse(body_out.model_dump(), status_code=202, headers={"Location": body_out.status_url})

    @app.get("/v1/requests", tags=["requests"], summary="The caller's recent requests (conversation history)")
    def list_requests(user: User, limit: int = 50) -> dict[str, Any]:
        if not 1 <= limit <= api_settings.api_history:
            raise ApiError(422, f"limit must be 1..{api_settings.api_history}", field="limit")
        return {"object": "list", "data": svc.history(user, limit)}

    @app.get("/v1/requests/{request_id}", response_model=RunPublic, tags=["requests"],
             summary="State, plan, tasks, answer, artifacts, usage (as `hgq ask --json`)")
    def get_request(request_id: str, user: User) -> RunPublic:
        return svc.view(user, request_id)

    @app.delete("/v1/requests/{request_id}", status_code=202, tags=["requests"], summary="Cancel a request")
    def cancel_request(request_id: str, user: User) -> dict[str, Any]:
        svc.own_run(user, request_id)
        status = svc.r.hget(run_keys(settings.key_prefix, request_id).meta, "status")
        if status in FINAL_RUN_STATUSES:
            return {"request_id": request_id, "status": status, "cancelled_tasks": []}
        revoked = svc.client.cancel(request_id)
        return {"request_id": request_id, "status": "cancelling", "cancelled_tasks": revoked}

    @app.get("/v1/requests/{request_id}/events", tags=["requests"],
             summary="Server-Sent Events of a run; Last-Event-ID (or ?after=) replays what was missed",
             response_class=StreamingResponse)
    async def request_events(request_id: str, request: Request, user: User, after: str | None = None) -> Response:
        await run_in_threadpool(svc.own_run, user, request_id)
        last = request.headers.get("last-event-id") or after or "0-0"
        if not STREAM_ID.match(last):
            field = "Last-Event-ID" if request.headers.get("last-event-id") else "after"
            raise ApiError(400, f"{field} must be a stream id like 1700000000000-0", field=field)

        async def stream() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            idle_since = time.monotonic()
            async for batch in svc.event_batches(request_id, last, request):
                if not batch:
                    if time.monotonic() - idle_since >= api_settings.api_sse_ping_s:
                        idle_since = time.monotonic()
                        yield ": ping\n\n"
                    continue
                idle_since = time.monotonic()
                yield "".join(sse_frame(data, event=str(data.get("type", "message")), eid=eid) for eid, data in batch)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)
