"""The HTTP API of hgq: requests, event streams, artifacts, an OpenAI-compatible endpoint, a web page.

Stateless: every fact lives in Redis (runs through HgqClient/RunStore, users and limits through
planner_service/auth.py), so any number of replicas can serve any user, and a replica killed
mid-request loses nothing. Planning and execution happen on the queues, never in a handler.

    uvicorn --factory planner_service.api:create_api_from_env     (or `hgq api`)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx
import redis
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from planner_service.auth import ApiKeys, Limiter, Ownership
from planner_service.client import HgqClient, sniff_media
from shared.catalog import TASK_TYPES
from shared.conversation import ConversationStore
from shared.errors import ArtifactError, HgqError, PlanError, RunNotFound
from shared.keys import run_keys
from shared.outputs import ArtifactRef
from shared.plan import PlanTask, parse_plan_json
from shared.redis_conn import reachable, text_redis
from shared.registry import candidates, live_workers, pools_alive
from shared.run_models import FINAL_RUN_STATUSES, RequestCreate, RunPublic
from shared.settings import ALL_QUEUES, Settings, get_settings

WEB_DIR = Path(__file__).resolve().parent / "web"
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
ARTIFACT_ID = re.compile(r"^[0-9a-f]{64}$")
CONVERSATION_PATTERN = r"^[A-Za-z0-9_-]{1,48}$"
CONVERSATION_ID = re.compile(CONVERSATION_PATTERN)
MAX_TEXT = 20_000


# --- errors ------------------------------------------------------------------------------------
class ApiError(Exception):
    """An error answered as JSON: {"error": {"message", "type", "field", "param", "details"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", field: str | None = None,
                 headers: dict[str, str] | None = None, details: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.field = status, message, type_, field
        self.headers = headers or {}
        self.details = details or []


def _error_body(status: int, message: str, type_: str, field: str | None,
                details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message, "type": type_, "field": field, "param": field, "code": status}
    if details:
        err["details"] = details
    return {"error": err}


_UNION_LABELS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic error location as a field path; union-branch labels are left out."""
    parts: list[str] = []
    for p in loc:
        p = str(p)
        if p in ("body", "query", "path", "header") and not parts:
            continue
        if "[" in p or p in _UNION_LABELS or (parts and parts[-1] == p):
            continue  # 'list[tagged-union[...]]', 'str', or a discriminator tag equal to its field
        parts.append(p)
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _validation_error(exc: ValidationError | RequestValidationError) -> ApiError:
    """A 422 naming every bad field as a path: `plan[0].id`, `messages[1].content[0]`. Of the
    errors of a union's branches, the deepest (the branch the input was meant for) are kept."""
    details = []
    for err in exc.errors():
        field = "body" if err.get("type") == "json_invalid" else _loc(list(err.get("loc", ())))
        details.append({"field": field, "problem": str(err.get("msg"))})
    details = [d for d in details
               if not any(e["field"].startswith((d["field"] + ".", d["field"] + "[")) for e in details)]
    details = [d for i, d in enumerate(details) if d not in details[:i]]
    first = details[0] if details else {"field": "body", "problem": "invalid"}
    message = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
    return ApiError(422, message, field=first["field"], details=details)


# --- request bodies -------------------------------------------------------------------------------
class FileIn(BaseModel):
    """A file in a JSON request: base64 `data`, or a `url` on an allowed host."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)
    data: str | None = None
    url: str | None = Field(None, max_length=2000)


class RequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    plan: list[PlanTask] | None = None
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{6,64}$")
    conversation_id: str | None = Field(None, pattern=CONVERSATION_PATTERN)
    files: list[FileIn] = Field(default_factory=list)

    @field_validator("plan", mode="before")
    @classmethod
    def _tasks(cls, value: Any) -> Any:
        if isinstance(value, dict) and "tasks" in value:
            return value["tasks"]
        return value


class Accepted(BaseModel):
    request_id: str
    status: str
    status_url: str
    events_url: str


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(BaseModel):
    data: str
    format: str = "wav"


class AudioPart(BaseModel):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[TextPart | ImagePart | AudioPart, Field(discriminator="type")]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class ChatIn(BaseModel):
    """OpenAI's chat completion request; sampling parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    hgq_plan: list[PlanTask] | None = None  # extension: run this plan, skip planning
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{6,64}$")  # extension: idempotency


class Upload(BaseModel):
    name: str
    data: bytes
    field: str


# --- the service --------------------------------------------------------------------------------
class Service:
    """Everything a handler needs; built once per app (per replica process)."""

    def __init__(self, settings: Settings, api: Settings, client: HgqClient | None = None):
        self.settings = settings
        self.api = api
        if client is None:
            from workers.app import create_app

            client = HgqClient(settings, create_app(settings))
        self.client = client
        self.r: redis.Redis = text_redis(settings.redis_url)
        self.keys = ApiKeys(self.r, settings.key_prefix)
        self.limiter = Limiter(self.r, settings.key_prefix, settings.run_ttl_s)
        self.owners = Ownership(self.r, settings.key_prefix, settings.run_ttl_s, api.api_history)
        self.aredis: aioredis.Redis | None = None

    # --- auth -------------------------------------------------------------------------------------
    def user_for(self, authorization: str | None) -> str:
        if not authorization:
            if not self.api.api_auth:
                return "local"
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>' (hgq keys create NAME)",
                           "authentication_error", "Authorization", {"WWW-Authenticate": "Bearer"})
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "the Authorization header must be 'Bearer <key>'", "authentication_error",
                           "Authorization", {"WWW-Authenticate": "Bearer"})
        info = self.keys.lookup(token.strip())
        if info is None:
            raise ApiError(401, "invalid or revoked API key", "authentication_error", "Authorization",
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return info.user

    def own_run(self, user: str, run_id: str) -> None:
        if not RUN_ID.match(run_id) or not self.owners.owns_run(user, run_id):
            raise ApiError(404, f"no request {run_id}", "not_found_error", "request_id")

    # --- submission -----------------------------------------------------------------------------
    def conversation(self, user: str, conversation_id: str | None) -> str | None:
        """The stored id of a user's conversation: namespaced by user, so that nobody can reach
        another user's conversation (its history or its files) by guessing its id."""
        if conversation_id is None:
            return None
        internal = f"{hashlib.sha256(user.encode()).hexdigest()[:12]}-{conversation_id}"
        store = ConversationStore(self.r, self.settings.key_prefix, internal, self.settings.run_ttl_s)
        if store.owner() not in (None, user):
            raise ApiError(404, f"no conversation {conversation_id}", "not_found_error", "conversation_id")
        return internal

    @staticmethod
    def public_conversation(internal: str | None) -> str | None:
        return internal.split("-", 1)[1] if internal and "-" in internal else internal

    def submit(self, user: str, text: str, plan: list[PlanTask] | None, request_id: str | None,
               uploads: list[Upload], urls: list[tuple[str, str | None, str]],
               conversation_id: str | None = None) -> tuple[str, bool]:
        """Limits, uploads, then the request. Returns (run id, created)."""
        limits = self.keys.limits(user, self.api.api_rate_per_minute, self.api.api_max_concurrent)
        wait = self.limiter.hit(user, limits.rpm)
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise ApiError(429, f"rate limit: {limits.rpm} requests per minute; retry in {retry}s",
                           "rate_limit_error", None, {"Retry-After": str(retry)})
        if request_id is not None:
            owner = self.owners.owner(request_id)
            if owner == user:
                return request_id, False  # idempotent resubmission
            if owner is not None:
                raise ApiError(409, "request_id is already used; choose another", field="request_id")
        if len(uploads) + len(urls) > self.api.api_max_uploads:
            raise ApiError(413, f"too many files: at most {self.api.api_max_uploads} per request", field="files")
        for url, name, field in urls:
            uploads.append(self.fetch(url, name, field))
        conversation = self.conversation(user, conversation_id)
        refs = self.store_uploads(user, uploads)
        run_id = request_id or uuid.uuid4().hex[:16]
        if not self.limiter.acquire(user, run_id, limits.max_concurrent):
            raise ApiError(429, f"too many requests in flight: at most {limits.max_concurrent} at once",
                           "rate_limit_error", None, {"Retry-After": "2"})
        try:
            self.client.submit(RequestCreate(text=text, uploads=refs, plan=plan, request_id=run_id, user=user,
                                             conversation_id=conversation))
        except PlanError as exc:
            self.limiter.release(user, run_id)
            raise ApiError(422, str(exc), field="plan",
                           details=[{"field": "plan", "problem": p} for p in exc.problems]) from exc
        except BaseException:
            self.limiter.release(user, run_id)
            raise
        if request_id is not None and self.owners.owner(run_id) != user:  # lost a race for the same id
            self.limiter.release(user, run_id)
            raise ApiError(409, "request_id is already used; choose another", field="request_id")
        self.owners.record_run(user, run_id)
        return run_id, True

    def store_uploads(self, user: str, uploads: list[Upload]) -> dict[str, ArtifactRef]:
        refs: dict[str, ArtifactRef] = {}
        for up in uploads:
            if len(up.data) > self.api.api_max_upload_bytes:
                raise ApiError(413, f"{up.name}: {len(up.data)} bytes exceeds the limit of "
                                    f"{self.api.api_max_upload_bytes} bytes", field=up.field)
            try:
                mime, kind = sniff_media(up.data, up.name)
            except ArtifactError as exc:
                raise ApiError(415, str(exc), "unsupported_media_type", up.field) from exc
            if mime not in self.api.api_allowed_mime:
                raise ApiError(415, f"{up.name}: {mime} is not allowed here", "unsupported_media_type", up.field)
            name = _unique(_safe_name(up.name, mime), refs)
            try:
                refs[name] = self.client.artifacts.put(up.data, mime, kind, name)
            except ArtifactError as exc:
                raise ApiError(413, str(exc), field=up.field) from exc
        self.owners.record_artifacts(user, [r.id for r in refs.values()])
        return refs

    def fetch(self, url: str, name: str | None, field: str) -> Upload:
        """Fetch a URL only if its host is allow-listed (no SSRF); never a redirect elsewhere."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise ApiError(400, "only http(s) URLs or data: URLs are accepted", field=field)
        if not _host_allowed(host, self.api.api_fetch_hosts):
            raise ApiError(400, f"fetching from host {host!r} is not allowed (HGQ_API_FETCH_HOSTS)", field=field)
        limit = self.api.api_max_upload_bytes
        try:
            with httpx.Client(follow_redirects=False, timeout=self.api.api_fetch_timeout_s) as http, \
                    http.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise ApiError(400, f"fetching the URL answered HTTP {resp.status_code}", field=field)
                data = bytearray()
                for chunk in resp.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise ApiError(413, f"the URL's file exceeds {limit} bytes", field=field)
        except httpx.HTTPError as exc:
            raise ApiError(400, f"fetching the URL failed: {exc}", field=field) from exc
        return Upload(name=name or PurePath(parts.path).name or "download", data=bytes(data), field=field)

    # --- reading ------------------------------------------------------------------------------------
    def view(self, user: str, run_id: str) -> RunPublic:
        self.own_run(user, run_id)
        try:
            return self.client.view(run_id)
        except RunNotFound as exc:
            raise ApiError(404, f"no request {run_id}", "not_found_error", "request_id") from exc

    def history(self, user: str, limit: int) -> list[dict[str, Any]]:
        ids = self.owners.runs(user, limit)
        pipe = self.r.pipeline(transaction=False)
        for run_id in ids:
            pipe.hmget(run_keys(self.settings.key_prefix, run_id).meta,
                       ["status", "created_at", "finished_at", "request", "response"])
        out = []
        for run_id, (status, created, finished, request, response) in zip(ids, pipe.execute(), strict=True):
            if status is None:
                continue  # expired
            req = json.loads(request) if request else {}
            out.append({"request_id": run_id, "status": status, "request": req.get("text", ""), "response": response,
                        "conversation_id": self.public_conversation(req.get("conversation_id")),
                        "created_at": float(created) if created else None,
                        "finished_at": float(finished) if finished else None})
        return out

    def aredis_client(self) -> aioredis.Redis:
        if self.aredis is None:
            self.aredis = aioredis.Redis.from_url(self.settings.redis_url, decode_responses=True,
                                                  health_check_interval=30)
        return self.aredis

    async def events(self, run_id: str, after: str, request: Request | None = None,
                     stop_on_done: bool = True) -> AsyncIterator[tuple[str, dict[str, Any]] | None]:
        """(stream id, event) from `after` on, until `done`; None now and then as a keep-alive tick."""
        r = self.aredis_client()
        k = run_keys(self.settings.key_prefix, run_id)
        last = after
        while True:
            if request is not None and await request.is_disconnected():
                return
            res = await r.xread({k.events: last}, block=self.api.api_sse_block_ms, count=200)
            rows = res[0][1] if res else []
            if not rows:
                # Nothing new: if the run is over (or gone) and nothing follows `last`, end the stream.
                meta = await r.hmget(k.meta, ["status", "response"])
                if meta[0] is None or meta[1] is not None:
                    tail = await r.xrange(k.events, min=f"({last}" if last != "0-0" else "-", count=200)
                    if not tail:
                        return
                    rows = tail
                else:
                    yield None
                    continue
            for eid, fields in rows:
                last = eid
                data = json.loads(fields["data"])
                yield eid, data
                if stop_on_done and data.get("type") == "done":
                    return


def _host_allowed(host: str, allowed: list[str]) -> bool:
    for pattern in allowed:
        pattern = pattern.lower().strip()
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if host == pattern:
            return True
    return False


_EXT_OF = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
           "image/bmp": ".bmp", "audio/wav": ".wav", "audio/flac": ".flac", "audio/ogg": ".ogg",
           "audio/mpeg": ".mp3"}


def _safe_name(name: str, mime: str) -> str:
    """A plain file name (no directories, no odd characters); one without an extension gets the
    content's. The name is what plans refer to, so an existing extension is kept."""
    base = PurePath(name.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[:80] or "file"
    if "." not in base:
        base += _EXT_OF.get(mime, "")
    return base


def _unique(name: str, taken: dict[str, Any]) -> str:
    if name not in taken:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    i = 2
    while f"{stem}-{i}{'.' + ext if ext else ''}" in taken:
        i += 1
    return f"{stem}-{i}{'.' + ext if ext else ''}"


def _decode_b64(data: str, field: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "not valid base64", field=field) from exc


def _data_url(url: str, field: str) -> bytes:
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:"):
        raise ApiError(400, "malformed data: URL", field=field)
    if head.endswith(";base64"):
        return _decode_b64(payload, field)
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(payload)


def _sse(data: dict[str, Any] | str, event: str | None = None, eid: str | None = None) -> str:
    lines = []
    if eid:
        lines.append(f"id: {eid}")
    if event:
        lines.append(f"event: {event}")
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    lines.extend(f"data: {line}" for line in payload.split("\n"))
    return "\n".join(lines) + "\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _BodyLimit:
    """ASGI middleware: refuse a body whose Content-Length is over the limit (413) before it is read,
    and mark every response `X-Content-Type-Options: nosniff`. (Plain ASGI: streams pass untouched.)"""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        problem = None
        if length is not None:
            if not length.isdigit():
                problem = (400, "bad Content-Length", "Content-Length")
            elif int(length) > self.max_bytes:
                problem = (413, f"body of {int(length)} bytes exceeds the limit of {self.max_bytes} bytes", "body")
        if problem is not None:
            status, message, field = problem
            await JSONResponse(_error_body(status, message, "invalid_request_error", field), status_code=status,
                               headers={"X-Content-Type-Options": "nosniff"})(scope, receive, send)
            return

        async def send_nosniff(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_nosniff)


async def current_user(request: Request) -> str:
    """The user of the request's Bearer key (401 when missing or invalid)."""
    svc: Service = request.app.state.service
    return await run_in_threadpool(svc.user_for, request.headers.get("authorization"))


User = Annotated[str, Depends(current_user)]


# --- the app --------------------------------------------------------------------------------------
_Body = TypeVar("_Body", bound=BaseModel)


def _json_body(raw: bytes, model: type[_Body]) -> _Body:
    """Parse and validate a JSON body; 400 for bad JSON, 422 naming the field otherwise."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", field="body") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc) from exc


def create_api(settings: Settings | None = None, api_settings: Settings | None = None,
               client: HgqClient | None = None) -> FastAPI:
    settings = settings or get_settings()
    api_settings = api_settings or settings
    svc = Service(settings, api_settings, client)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 128
        yield
        if svc.aredis is not None:
            await svc.aredis.aclose()
            svc.aredis = None

    app = FastAPI(title="hgq", version="0.1.0", lifespan=lifespan,
                  description="HuggingGPT on Celery and Redis: requests, live events, artifacts, and an "
                              "OpenAI-compatible chat endpoint. Authenticate with `Authorization: Bearer <key>`.")
    app.state.service = svc

    # --- errors ------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_error_body(exc.status, exc.message, exc.type, exc.field, exc.details),
                            status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return await _api_error(_, _validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(_error_body(exc.status_code, str(exc.detail), type_, None),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(HgqError)
    async def _hgq(_: Request, exc: HgqError) -> JSONResponse:
        status = 404 if isinstance(exc, RunNotFound) else 400
        return JSONResponse(_error_body(status, str(exc), "invalid_request_error", None), status_code=status)

    app.add_middleware(_BodyLimit, max_bytes=api_settings.api_max_body_bytes)

    # --- Prometheus (unauthenticated: scrape it on an internal network only) -----------------------
    from monitoring.metrics import MetricsMiddleware, exposition

    app.add_middleware(MetricsMiddleware)

    @app.get("/metrics", include_in_schema=False)
    def _metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)

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
            body = _json_body(await request.body(), RequestIn)
            text, plan, request_id, conversation_id = body.text, body.plan, body.request_id, body.conversation_id
            for i, f in enumerate(body.files):
                field = f"files[{i}]"
                if (f.data is None) == (f.url is None):
                    raise ApiError(422, "give exactly one of data (base64) and url", field=field)
                if f.url is not None:
                    if f.url.startswith("data:"):
                        uploads.append(Upload(name=f.name or f"file{i}", data=_data_url(f.url, field), field=field))
                    else:
                        urls.append((f.url, f.name, field))
                else:
                    assert f.data is not None
                    uploads.append(Upload(name=f.name or f"file{i}", data=_decode_b64(f.data, field + ".data"),
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
            async for item in svc.events(request_id, last, request):
                if item is None:
                    if time.monotonic() - idle_since >= api_settings.api_sse_ping_s:
                        idle_since = time.monotonic()
                        yield ": ping\n\n"
                    continue
                eid, data = item
                idle_since = time.monotonic()
                yield _sse(data, event=str(data.get("type", "message")), eid=eid)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)

    # --- artifacts ---------------------------------------------------------------------------------
    @app.get("/v1/artifacts/{artifact_id}", tags=["artifacts"], summary="A stored file with its MIME type",
             response_class=Response)
    def get_artifact(artifact_id: str, user: User) -> Response:
        missing = ApiError(404, f"no artifact {artifact_id[:64]}", "not_found_error", "artifact_id")
        if not ARTIFACT_ID.match(artifact_id) or not svc.owners.owns_artifact(user, artifact_id):
            raise missing
        try:
            ref = svc.client.artifacts.ref(artifact_id)
            data = svc.client.artifacts.get(artifact_id)
        except ArtifactError as exc:
            raise missing from exc
        name = _safe_name(ref.name or artifact_id[:12], ref.mime)
        return Response(content=data, media_type=ref.mime, headers={
            "Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "private, max-age=3600",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "ETag": f'"{artifact_id}"'})

    # --- OpenAI-compatible ---------------------------------------------------------------------
    @app.get("/v1/models", tags=["openai"], summary="The models this API serves (OpenAI format)")
    def list_models(user: User) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": api_settings.api_model_name, "object": "model",
                                            "created": 1700000000, "owned_by": "hgq"}]}

    @app.post("/v1/chat/completions", tags=["openai"], summary="OpenAI-compatible chat completion (stream or not)")
    async def chat_completions(request: Request, user: User) -> Response:
        body = _json_body(await request.body(), ChatIn)
        if body.model != api_settings.api_model_name:
            raise ApiError(404, f"model {body.model!r} does not exist; use {api_settings.api_model_name!r}",
                           "not_found_error", "model")
        text, uploads, urls = _chat_request(body)
        run_id, _ = await run_in_threadpool(svc.submit, user, text, body.hgq_plan, body.request_id, uploads, urls)
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
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": view.response or view.error or ""},
                             "finish_reason": "stop"}],
                "usage": _usage(view), "hgq": _hgq_extra(view)})

        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            return _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

        async def stream() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
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
                elif kind == "task":
                    yield f": hgq task {ev.get('node')} {ev.get('status')}\n\n"
                elif kind in ("planned", "planning"):
                    yield f": hgq {kind}\n\n"
                elif kind == "done":
                    break
            view = await run_in_threadpool(svc.client.view, run_id)
            if not streamed:
                for piece in _pieces(view.response or view.error or ""):
                    yield chunk({"content": piece})
            yield chunk({}, "stop", hgq=_hgq_extra(view))
            if include_usage:
                yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                            "choices": [], "usage": _usage(view)})
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)

    # --- capabilities and health -------------------------------------------------------------------
    @app.get("/v1/capabilities", tags=["service"], summary="Task types and models the live workers serve now")
    def capabilities(user: User) -> dict[str, Any]:
        workers = live_workers(svc.r, settings.key_prefix)
        served = candidates(workers)
        tasks = {}
        for name, models in sorted(served.items()):
            spec = TASK_TYPES.get(name)
            tasks[name] = {
                "pool": spec.pool if spec else None, "description": spec.description if spec else "",
                "inputs": {k: {"kind": s.kind, "required": s.required} for k, s in spec.inputs.items()} if spec else {},
                "produces": sorted(spec.produces) if spec else [],
                "models": [m.model_dump() for m in models]}
        pools: dict[str, int] = {}
        for w in workers:
            pools[w.pool] = pools.get(w.pool, 0) + w.concurrency
        return {"tasks": tasks, "pools": {q: pools.get(q, 0) for q in ALL_QUEUES},
                "workers": [{"hostname": w.hostname, "pool": w.pool, "concurrency": w.concurrency} for w in workers]}

    @app.get("/healthz", tags=["service"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], summary="Redis reachable and a live worker in every pool")
    def readyz() -> JSONResponse:
        redis_ok = reachable(settings.redis_url)
        alive: set[str] = set()
        if redis_ok:
            try:
                alive = pools_alive(live_workers(svc.r, settings.key_prefix))
            except redis.RedisError:
                redis_ok = False
        pools = {q: q in alive for q in ALL_QUEUES}
        ready = redis_ok and all(pools.values())
        return JSONResponse({"ready": ready, "redis": redis_ok, "pools": pools}, status_code=200 if ready else 503)

    # --- web page -------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: data:; "
                                       "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
                                       "frame-ancestors 'none'",
            "Cache-Control": "no-cache"})

    if WEB_DIR.is_dir():
        app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    _add_schemas(app)
    return app


def _add_schemas(app: FastAPI) -> None:
    """Put RequestIn (documented by hand on the multi-content endpoint) into the OpenAPI components."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        extra = RequestIn.model_json_schema(ref_template="#/components/schemas/{model}")
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, sub in extra.pop("$defs", {}).items():
            comps.setdefault(name, sub)
        comps["RequestIn"] = extra
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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
        texts: list[str] = []
        if isinstance(msg.content, str):
            texts.append(msg.content)
        for j, part in enumerate(msg.content if isinstance(msg.content, list) else []):
            field = f"messages[{i}].content[{j}]"
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImagePart):
                counts["image"] += 1
                name = f"image{counts['image']}"
                url = part.image_url.url
                if url.startswith("data:"):
                    uploads.append(Upload(name=name, data=_data_url(url, field + ".image_url.url"), field=field))
                else:
                    urls.append((url, name, field + ".image_url.url"))
            elif isinstance(part, AudioPart):
                counts["audio"] += 1
                fmt = re.sub(r"[^a-z0-9]", "", part.input_audio.format.lower())[:5] or "wav"
                uploads.append(Upload(name=f"audio{counts['audio']}.{fmt}",
                                      data=_decode_b64(part.input_audio.data, field + ".input_audio.data"),
                                      field=field))
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


def _hgq_extra(view: RunPublic) -> dict[str, Any]:
    return {"request_id": view.request_id, "status": view.status, "error": view.error,
            "tasks": {k: {"task": t.task, "status": t.status, "model": t.model} for k, t in view.tasks.items()},
            "artifacts": [{"id": a.id, "kind": a.kind, "mime": a.mime, "url": f"/v1/artifacts/{a.id}"}
                          for a in view.artifacts]}


def create_api_from_env() -> FastAPI:
    """uvicorn factory: settings from the environment."""
    from monitoring.logging import setup_logging

    setup_logging()
    return create_api(get_settings())


__all__ = ["create_api", "create_api_from_env", "ApiError"]
