"""ASGI middleware of the API."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse

from planner_service.api.errors import error_body

log = logging.getLogger(__name__)


class BodyLimit:
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
            await JSONResponse(error_body(status, message, "invalid_request_error", field), status_code=status,
                               headers={"X-Content-Type-Options": "nosniff"})(scope, receive, send)
            return

        async def send_nosniff(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_nosniff)


class CatchAll:
    """ASGI middleware: an unexpected exception becomes hgq's JSON 500 and the connection stays
    open (Starlette's own 500 re-raises, and uvicorn then closes a keep-alive connection). The
    exception is logged with its traceback; the client sees no internals."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:  # half a response is out: only closing the connection can tell the client
                raise
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            await JSONResponse(error_body(500, "internal error in hgq's API; it is logged, and nothing you sent "
                                               "was lost: retry, or report it", "api_error", None),
                               status_code=500)(scope, receive, send)
