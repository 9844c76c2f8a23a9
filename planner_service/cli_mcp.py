"""`hgq mcp`: serve hgq's tools over MCP (stdio for desktop/IDE agents, or streamable HTTP with
API-key auth). planner_service/cli.py calls `register(main)`."""

from __future__ import annotations

import sys
from typing import Any

import click

from shared.errors import HgqError
from shared.settings import get_settings


def bearer_guard(app: Any, settings: Any) -> Any:
    """ASGI wrapper: every HTTP request needs `Authorization: Bearer <hgq API key>` (hgq keys create)."""
    from starlette.responses import JSONResponse

    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis

    keys = ApiKeys(text_redis(settings.redis_url), settings.key_prefix)

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip() or keys.lookup(token.strip()) is None:
                response = JSONResponse({"error": "missing or unknown API key: send 'Authorization: Bearer <key>' "
                                                  "(hgq keys create NAME)"}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


@click.command("mcp")
@click.option("--http", "http", is_flag=True, help="streamable HTTP (API-key auth) instead of stdio")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
def mcp_cmd(http: bool, host: str, port: int) -> None:
    """Serve hgq over MCP: an `ask` tool and one tool per task type live workers serve."""
    from planner_service.cli_progress import err
    from planner_service.mcp_server import build_server

    settings = get_settings()
    try:
        server = build_server(settings)
    except HgqError as exc:
        err(f"error: {exc}")
        sys.exit(1)
    if not http:
        import anyio

        print("hgq mcp: serving over stdio", file=sys.stderr)
        anyio.run(server.run_stdio_async)
        return
    import uvicorn

    app = bearer_guard(server.streamable_http_app(host=host), settings)
    err(f"hgq mcp: streamable HTTP at http://{host}:{port}/mcp (Authorization: Bearer <hgq API key>)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(main: click.Group) -> None:
    main.add_command(mcp_cmd)
