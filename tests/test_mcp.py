"""`hgq mcp` with the official `mcp` client: over stdio (a real `hgq mcp` subprocess on the test
stack) list the tools, run one task with an image and get an image back, run a whole request
with `ask`; a bad file is a tool error naming it; over streamable HTTP a call without a valid API
key is refused with 401."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import _free_port
from tests.helpers import diag
from tests.media import png, shapes_image

pytestmark = pytest.mark.timeout(180)


def _png() -> bytes:
    _, img = shapes_image(96, 64, fmt="PNG")
    return png(img)


async def _session_calls(hgq_env: dict[str, str], fake_llm: Any) -> dict[str, Any]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "planner_service.cli", "mcp"], env=hgq_env)
    out: dict[str, Any] = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        out["tools"] = tools
        png = base64.b64encode(_png()).decode()
        out["gray"] = await session.call_tool("image_to_image", {"image": png, "style": "gray"})
        out["bad"] = await session.call_tool("image_to_image", {"image": "not base64 !!", "style": "gray"})
        fake_llm.script("plan", json.dumps({"tasks": [diag(0, [], 0.0, text="hello there")]}))
        fake_llm.script("respond", "The diagnostic task echoed: n0(hello there).")
        out["ask"] = await session.call_tool("ask", {"request": "please echo hello there"})
        # a whole request with a file: the planner sees it by name and its task gets the bytes
        fake_llm.script("plan", json.dumps({"tasks": [{"id": 0, "task": "image-to-image", "dep": [-1],
                                                       "args": {"image": "holiday.png", "style": "gray"}}]}))
        out["ask_file"] = await session.call_tool("ask", {"request": "make holiday.png black and white",
                                                          "files": [{"name": "holiday.png", "data": png}]})
        out["plan_prompt"] = fake_llm.calls("plan")[-1]["messages"][-1]["content"]
    return out


def test_mcp_over_stdio_lists_tools_runs_a_task_with_an_image_and_asks(stack, hgq_env, fake_llm) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    got = anyio.run(_session_calls, hgq_env, fake_llm)
    tools = got["tools"]
    assert "ask" in tools and "image_to_image" in tools
    schema = tools["image_to_image"].input_schema
    assert "image" in schema["required"] and "base64" in schema["properties"]["image"]["description"]
    assert tools["ask"].input_schema["required"] == ["request"]

    gray = got["gray"]
    assert not gray.is_error, gray
    images = [c for c in gray.content if c.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    out = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
    assert out.size == (96, 64)
    assert all(r == g == b for r, g, b in out.convert("RGB").get_flattened_data())  # gray: every pixel

    bad = got["bad"]
    assert bad.is_error and "base64" in bad.content[0].text

    ask = got["ask"]
    assert not ask.is_error, ask
    text = " ".join(c.text for c in ask.content if c.type == "text")
    assert "n0(hello there)" in text

    with_file = got["ask_file"]
    assert not with_file.is_error, with_file
    assert "holiday.png (image)" in got["plan_prompt"]
    images = [c for c in with_file.content if c.type == "image"]
    assert len(images) == 1
    out = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
    assert out.size == (96, 64) and all(r == g == b for r, g, b in out.convert("RGB").get_flattened_data())


def test_mcp_over_http_needs_an_api_key(stack, hgq_env, settings) -> None:  # type: ignore[no-untyped-def]
    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "planner_service.cli", "mcp", "--http", "--port", str(port)],
                            env=hgq_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.post(url, json=body, headers=headers, timeout=10)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.3)
        assert r.status_code == 401 and "API key" in r.json()["error"]
        key, _ = ApiKeys(text_redis(settings.redis_url), settings.key_prefix).create("mcp-user")
        wrong = httpx.post(url, json=body, headers={**headers, "Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        ok = httpx.post(url, json=body, headers={**headers, "Authorization": f"Bearer {key}"}, timeout=10)
        assert ok.status_code == 200, ok.text
        assert "serverInfo" in ok.text and "hgq" in ok.text
    finally:
        proc.terminate()
        proc.wait(10)
