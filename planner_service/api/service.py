"""The API's service object: authentication, submission with limits and uploads, reading runs
and following their event streams. Built once per app (per replica process); handlers call it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import redis
import redis.asyncio as aioredis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from planner_service.api.errors import ApiError
from planner_service.api.schemas import RUN_ID, Upload
from planner_service.api.signed_urls import UrlSigner
from planner_service.api.uploads import fetch_url, safe_name, unique_name
from planner_service.auth import ApiKeys, Limiter, Ownership
from planner_service.client import HgqClient, sniff_media
from shared.broker_queues import QueueDepths
from shared.conversation import ConversationStore
from shared.errors import ArtifactError, PlanError, RunNotFound
from shared.keys import run_keys
from shared.llm_backlog import LLMBacklog
from shared.outputs import ArtifactRef
from shared.plan import PlanTask
from shared.redis_conn import text_redis
from shared.run_models import RequestCreate, RunPublic
from shared.settings import LLM_QUEUE, Settings

BACKLOG_READ_S = 0.25  # how old the LLM backlog reading that admission control uses may be
SSE_COALESCE_S = 0.02  # an event stream's pause after each batch it sends (events then go out a few at a time)


class Service:
    """Everything a handler needs; built once per app (per replica process)."""

    def __init__(self, settings: Settings, api: Settings, client: HgqClient | None = None):
        self.settings = settings
        self.api = api
        if client is None:
            from planner_service.publisher import publisher_app

            client = HgqClient(settings, publisher_app(settings))
        self.client = client
        self.r: redis.Redis = text_redis(settings.redis_url)
        self.keys = ApiKeys(self.r, settings.key_prefix)
        self.limiter = Limiter(self.r, settings.key_prefix, settings.run_ttl_s)
        self.owners = Ownership(self.r, settings.key_prefix, settings.run_ttl_s, api.api_history)
        self.aredis: aioredis.Redis | None = None
        self.depths = QueueDepths(settings, self.r)
        self.signer = UrlSigner(api, self.r, settings.key_prefix)
        self._backlog_lock = threading.Lock()
        self._backlog, self._backlog_read_at, self._submitted_since = 0, float("-inf"), 0

    def warm(self, connections: int) -> None:
        """Open `connections` Redis connections and broker producers before the first request: a
        burst of new users then finds them ready instead of each opening its own (connect, HELLO,
        CLIENT SETINFO; a producer's broker connection) while the others wait on the GIL."""
        pool = self.r.connection_pool
        held = [pool.get_connection() for _ in range(connections)]
        for conn in held:
            pool.release(conn)
        producers = self.client.app.producer_pool
        taken = [producers.acquire(block=True, timeout=5) for _ in range(min(connections, producers.limit or connections))]
        for producer in taken:
            producer.connection.ensure_connection(max_retries=1)
            producer.release()

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
               conversation_id: str | None = None, source: Literal["api", "chat"] = "api") -> tuple[str, bool]:
        """Limits, uploads, then the request. Returns (run id, created). `source` ("api" or "chat",
        the OpenAI-compatible endpoint) is kept with the run, so the history can tell them apart."""
        wait, limits = self.limiter.admit(user, self.api.api_rate_per_minute, self.api.api_max_concurrent)
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
        self.refuse_past_backlog()
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
                                             conversation_id=conversation, source=source))
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
        with self._backlog_lock:
            self._submitted_since += 1  # its plan stage now waits for the LLM too
        return run_id, True

    def llm_backlog(self) -> int:
        """LLM calls not yet answered + plan/respond stages still queued for the LLM worker. Read from
        Redis at most every BACKLOG_READ_S; in between, this replica's own submissions are added to the
        last reading (a burst of submissions costs one reading, and still counts itself)."""
        now = time.monotonic()
        with self._backlog_lock:
            if now - self._backlog_read_at < BACKLOG_READ_S:
                return self._backlog + self._submitted_since
        calls = LLMBacklog.from_settings(self.r, self.settings).in_flight()
        backlog = calls + self.depths.length(LLM_QUEUE)
        with self._backlog_lock:
            self._backlog, self._backlog_read_at, self._submitted_since = backlog, now, 0
        return backlog

    def refuse_past_backlog(self) -> None:
        """Past HGQ_LLM_MAX_BACKLOG, new work would only time out in the queue: 503 + Retry-After."""
        limit = self.api.llm_max_backlog
        if not limit:
            return
        backlog = self.llm_backlog()
        if backlog >= limit:
            retry = min(60, max(2, 2 * (backlog - limit + 1)))
            raise ApiError(503, f"the LLM is busy: {backlog} requests are waiting for it (HGQ_LLM_MAX_BACKLOG="
                           f"{limit}); retry in {retry}s", "overloaded_error", None, {"Retry-After": str(retry)})

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
            name = unique_name(safe_name(up.name, mime), refs)
            try:
                refs[name] = self.client.artifacts.put(up.data, mime, kind, name)
            except ArtifactError as exc:
                raise ApiError(413, str(exc), field=up.field) from exc
        self.owners.record_artifacts(user, [r.id for r in refs.values()])
        return refs

    def fetch(self, url: str, name: str | None, field: str) -> Upload:
        return fetch_url(url, name, field, self.api)

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
                        "source": req.get("source") or "api",
                        "created_at": float(created) if created else None,
                        "finished_at": float(finished) if finished else None})
        return out

    def aredis_client(self) -> aioredis.Redis:
        if self.aredis is None:
            self.aredis = aioredis.Redis.from_url(self.settings.redis_url, decode_responses=True,
                                                  health_check_interval=30)
        return self.aredis

    async def event_batches(self, run_id: str, after: str, request: Request | None = None,
                            stop_on_done: bool = True) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
        """Batches of (stream id, event) from `after` on, until `done`; an empty batch now and then as
        a keep-alive tick. After a batch, the next read waits SSE_COALESCE_S, so the events of a busy
        run (each task's queued / running / finished, answer pieces) go out a few at a time rather
        than one read and one write each: a burst of users costs the API less."""
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
                    yield []
                    continue
            batch = []
            for eid, fields in rows:
                last = eid
                data = json.loads(fields["data"])
                batch.append((eid, data))
                if stop_on_done and data.get("type") == "done":
                    yield batch
                    return
            yield batch
            await asyncio.sleep(SSE_COALESCE_S)

    async def events(self, run_id: str, after: str, request: Request | None = None,
                     stop_on_done: bool = True) -> AsyncIterator[tuple[str, dict[str, Any]] | None]:
        """(stream id, event) from `after` on, until `done`; None now and then as a keep-alive tick."""
        async for batch in self.event_batches(run_id, after, request, stop_on_done):
            if not batch:
                yield None
            for item in batch:
                yield item


BEARER = HTTPBearer(auto_error=False, description="an API key from `hgq keys create NAME`")


async def current_user(request: Request,
                       _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None) -> str:
    """The user of the request's Bearer key (401 when missing or invalid). `_declared` only declares
    the bearer scheme in the OpenAPI document (the Authorize button of /docs); the header is read here."""
    svc: Service = request.app.state.service
    return await run_in_threadpool(svc.user_for, request.headers.get("authorization"))


User = Annotated[str, Depends(current_user)]
