"""`hgq mcp`'s tools follow the live workers: a pool started after the MCP server adds its tools
and both kinds of client hear of it (a 2026-07-28 client on its `subscriptions/listen` stream, a
handshake-era client as a `notifications/tools/list_changed` on its session); when that pool's
worker stops, its tools go and calling one is a tool error saying no worker serves it. Real
`hgq mcp` subprocesses over stdio, real worker processes on their own Redis DB."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

pytestmark = pytest.mark.timeout(240)


async def _follow_the_workers(env: dict[str, str], stack: Any) -> dict[str, Any]:
    from mcp import ClientSession
    from mcp.client.client import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.types import ToolListChangedNotification

    params = StdioServerParameters(command=sys.executable, args=["-m", "planner_service.cli", "mcp"], env=env)
    legacy_heard = anyio.Event()
    heard: list[str] = []

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, ToolListChangedNotification):
            heard.append("legacy")
            legacy_heard.set()

    out: dict[str, Any] = {}
    async with Client(params) as modern, stdio_client(params) as (read, write), \
            ClientSession(read, write, message_handler=on_message) as legacy:
        init = await legacy.initialize()
        out["legacy_caps"] = init.capabilities.tools
        out["before"] = {t.name for t in (await modern.list_tools()).tools}
        out["legacy_before"] = {t.name for t in (await legacy.list_tools()).tools}
        async with modern.listen(tools_list_changed=True) as events:
            await anyio.to_thread.run_sync(lambda: stack.start_workers(("vision",)))
            with anyio.fail_after(60):
                await events.__anext__()
                await legacy_heard.wait()
            out["started"] = {t.name for t in (await modern.list_tools()).tools}
            out["legacy_started"] = {t.name for t in (await legacy.list_tools()).tools}

            legacy_heard = anyio.Event()
            vision = next(proc for name, proc in stack.procs if name == "worker-vision")
            vision.terminate()  # a clean stop withdraws the worker from the registry
            await anyio.to_thread.run_sync(lambda: vision.wait(60))
            with anyio.fail_after(60):
                await events.__anext__()
                await legacy_heard.wait()
            out["stopped"] = {t.name for t in (await modern.list_tools()).tools}
            out["gone"] = await modern.call_tool("image_to_image", {"image": "aGk=", "style": "gray"})
    out["heard"] = heard
    return out


def test_the_tool_list_follows_the_live_workers_and_clients_are_told(hgq_env: dict[str, str], tmp_path: Path) -> None:
    from planner_service.stack import Stack
    from shared.settings import Settings

    env = {**hgq_env, "REDIS_URL": hgq_env["REDIS_URL"].rsplit("/", 1)[0] + "/6",  # own registry: DB 6
           "HGQ_MCP_TOOLS_POLL_S": "0.5", "HGQ_HOME": str(tmp_path / "home")}
    settings = Settings(redis_url=env["REDIS_URL"], home=tmp_path / "home", preload_models=False)  # type: ignore[call-arg]
    with Stack(settings, say=lambda m: None, log_dir=tmp_path / "logs") as stack:
        stack.env.update(env)
        stack.start_workers(("text",), concurrency=1)
        got = anyio.run(_follow_the_workers, env, stack)

    assert got["legacy_caps"] is not None and got["legacy_caps"].list_changed is True
    assert "ask" in got["before"] and "summarization" in got["before"]
    assert "image_to_image" not in got["before"] and got["legacy_before"] == got["before"]
    assert {"image_to_image", "image_to_text", "object_detection"} <= got["started"] - got["before"]
    assert got["legacy_started"] == got["started"]
    assert got["stopped"] == got["before"]
    assert got["gone"].is_error and "no live hgq worker" in got["gone"].content[0].text
    assert got["heard"] == ["legacy", "legacy"]  # once per change, not once per poll
