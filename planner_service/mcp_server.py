"""`hgq mcp`: hgq as an MCP server (the official `mcp` package), over stdio or streamable HTTP.

Tools: `ask` runs a whole request (planning, the tasks, the written answer); one tool per task
type that a live worker serves runs that task alone (an explicit one-task plan, no LLM call).
Files go in as base64 (or the id of a file hgq already holds); results come back as text plus
image and audio content. Over HTTP every request needs `Authorization: Bearer <hgq API key>`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import inspect
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

from pydantic import BaseModel, Field

from shared.catalog import TASK_TYPES, TaskType
from shared.errors import HgqError
from shared.outputs import ArtifactRef
from shared.plan import PlanTask
from shared.registry import live_workers
from shared.run_models import RequestCreate, RunPublic
from shared.settings import Settings

FINAL = ("succeeded", "failed", "cancelled")
MAX_FILE_BYTES_B64 = 4 / 3  # base64 overhead, for the size check before decoding
log = logging.getLogger("hgq.mcp")


class McpFile(BaseModel):
    """A file for hgq: its name (how the request refers to it) and its bytes as base64."""

    name: str = Field(min_length=1, max_length=200, description="file name, e.g. photo.jpg")
    data: str = Field(description="the file's bytes, base64-encoded")


class McpUserError(HgqError):
    """A tool call hgq cannot run as given (bad base64, unknown file, a failed run)."""


class HgqTools:
    """What the MCP tools do, on top of hgq's client (Redis + broker); no MCP types in here."""

    def __init__(self, settings: Settings, client: Any = None, timeout_s: float | None = None):
        if client is None:
            from planner_service.client import HgqClient
            from planner_service.publisher import publisher_app

            client = HgqClient(settings, publisher_app(settings))
        self.settings = settings
        self.client = client
        self.timeout_s = timeout_s or settings.api_chat_timeout_s

    def served_task_types(self) -> list[TaskType]:
        """Task types with a live worker behind them (diagnostics only when HGQ_DIAGNOSTICS is on)."""
        from shared.redis_conn import text_redis

        served = {m.task for w in live_workers(text_redis(self.settings.redis_url), self.settings.key_prefix)
                  for m in w.models}
        return [t for name, t in sorted(TASK_TYPES.items())
                if name in served and (self.settings.diagnostics or not t.diagnostic)]

    def upload(self, file: McpFile) -> ArtifactRef:
        if len(file.data) > self.settings.max_artifact_bytes * MAX_FILE_BYTES_B64 + 4:
            raise McpUserError(f"{file.name}: larger than {self.settings.max_artifact_bytes} bytes")
        try:
            data = base64.b64decode(file.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise McpUserError(f"{file.name}: data is not valid base64 ({exc})") from exc
        ref: ArtifactRef = self.client.put_file(data, file.name)
        return ref

    def run(self, request: RequestCreate) -> RunPublic:
        run_id = self.client.submit(request)
        deadline = time.monotonic() + self.timeout_s
        run = self.client.run(run_id)
        while time.monotonic() < deadline:
            if run.meta().get("status") in FINAL:  # one hash read; the whole view once, at the end
                view: RunPublic = self.client.view(run_id)
                return view
            time.sleep(0.2)
        self.client.cancel(run_id)
        raise McpUserError(f"request {run_id} did not finish in {self.timeout_s:.0f} s; it was cancelled")

    def ask(self, request: str, files: list[McpFile]) -> RunPublic:
        uploads = {f.name: self.upload(f) for f in files}
        return self.run(RequestCreate(text=request, uploads=uploads, user="mcp"))

    def run_task(self, task: TaskType, args: dict[str, Any]) -> RunPublic:
        uploads: dict[str, ArtifactRef] = {}
        plan_args: dict[str, str | int | float | bool] = {}
        for name, value in args.items():
            if value is None:
                continue
            slot = task.inputs.get(name)
            if slot is not None and slot.kind in ("image", "audio"):
                ref = self._file_arg(name, str(value))
                key = f"{name}.{ref.mime.split('/')[-1]}"
                uploads[key] = ref
                plan_args[name] = key
            else:
                plan_args[name] = value
        plan = [PlanTask(id=0, task=task.name, dep=[-1], args=plan_args)]
        return self.run(RequestCreate(text=f"{task.name} via MCP", uploads=uploads, plan=plan, user="mcp"))

    def _file_arg(self, name: str, value: str) -> ArtifactRef:
        """An image/audio argument: the id of a file hgq holds (64 hex digits) or base64 bytes."""
        if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
            ref: ArtifactRef = self.client.artifacts.ref(value)  # ArtifactError (missing/expired) names it
            return ref
        return self.upload(McpFile(name=name, data=value))


@contextlib.contextmanager
def tool_errors() -> Iterator[None]:
    """hgq's domain errors (a bad file, a failed run, a refused plan) as MCP tool errors the agent reads."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        yield
    except HgqError as exc:
        raise ToolError(str(exc)) from exc


def result_content(tools: HgqTools, view: RunPublic) -> list[Any]:
    """A finished run as MCP content: the answer (or each task's text) and every image/audio file."""
    from mcp.types import AudioContent, BlobResourceContents, EmbeddedResource, ImageContent, TextContent

    if view.status != "succeeded":
        raise McpUserError(f"request {view.request_id} {view.status}: {view.error or 'no reason recorded'}")
    if view.response:
        texts = [view.response]
    else:
        texts = [t.output.text for t in view.tasks.values() if t.output is not None and t.output.text]
    content: list[Any] = [TextContent(type="text", text=t) for t in texts]
    for art in view.artifacts:
        data = base64.b64encode(tools.client.artifacts.get(art.id)).decode()
        if art.kind == "image":
            content.append(ImageContent(type="image", data=data, mime_type=art.mime))
        elif art.kind == "audio":
            content.append(AudioContent(type="audio", data=data, mime_type=art.mime))
        else:  # video: MCP has no video content type; an embedded file keeps it (and its MIME type)
            content.append(EmbeddedResource(type="resource", resource=BlobResourceContents(
                uri=f"hgq://artifacts/{art.id}", mime_type=art.mime, blob=data)))
    return content or [TextContent(type="text", text="(the run produced no output)")]


def task_tool(tools: HgqTools, task: TaskType) -> Callable[..., list[Any]]:
    """A function whose signature is the task type's inputs (the MCP input schema is built from it)."""
    params = []
    for name, slot in task.inputs.items():
        doc = slot.doc or (f"the {slot.kind}" if slot.kind == "text" else
                           f"the {slot.kind} file as base64 (or the id of a file hgq already holds)")
        ann = Annotated[str, Field(description=doc)] if slot.required else Annotated[str | None, Field(description=doc)]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                                        default=inspect.Parameter.empty if slot.required else None))
    for name, doc in task.params.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                        annotation=Annotated[str | None, Field(description=doc)], default=None))

    def call(**kwargs: Any) -> list[Any]:
        with tool_errors():
            return result_content(tools, tools.run_task(task, kwargs))

    call.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params}
    call.__name__ = task_tool_name(task)
    return call


def task_tool_name(task: TaskType) -> str:
    return task.name.replace("-", "_")


class ServedTools:
    """The per-task-type tools, kept in step with the live workers: a pool started after `hgq mcp`
    adds its tools, one whose workers are gone drops them. Redis is read in a thread; the server's
    tool table changes only on the event loop. A change is published as `tools/list_changed` to the
    clients listening for it (`subscriptions/listen`)."""

    def __init__(self, server: Any, tools: HgqTools, bus: Any):
        self.server = server
        self.tools = tools
        self.bus = bus
        self.names: set[str] = set()
        self.legacy_clients: weakref.WeakSet[Any] = weakref.WeakSet()  # handshake-era connections seen

    async def remember_session(self, ctx: Any, call_next: Any) -> Any:
        """Middleware: a client on a handshake-era protocol (2025 and before) has no listen stream;
        it gets `tools/list_changed` on its connection instead. `ctx.session` is a per-request proxy; the
        connection behind it (the SDK's `Connection`, not public on the proxy) lasts as long as the client."""
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            connection = getattr(ctx.session, "_connection", None)
            if connection is not None:
                self.legacy_clients.add(connection)
        return await call_next(ctx)

    async def notify(self) -> None:
        from mcp.server.subscriptions import ToolsListChanged

        await self.bus.publish(ToolsListChanged())
        for connection in list(self.legacy_clients):
            try:
                await connection.send_tool_list_changed()
            except Exception as exc:  # a client that went away: nothing to tell it
                log.debug("hgq mcp: tools/list_changed not delivered (%s)", exc)
                self.legacy_clients.discard(connection)

    def apply(self, served: list[TaskType]) -> bool:
        by_name = {task_tool_name(t): t for t in served}
        for name in sorted(self.names - by_name.keys()):
            self.server.remove_tool(name)
        for name in sorted(by_name.keys() - self.names):
            task = by_name[name]
            self.server.add_tool(task_tool(self.tools, task), name=name, description=(
                f"{task.description} (task type {task.name}, runs on hgq's {task.pool} workers)"))
        changed = by_name.keys() != self.names
        self.names = set(by_name)
        return changed

    async def refresh(self) -> bool:
        """Read the live workers and update the tools; a Redis outage keeps the current list."""
        import anyio
        import redis

        try:
            served = await anyio.to_thread.run_sync(self.tools.served_task_types)
        except redis.RedisError as exc:
            log.warning("hgq mcp: cannot read the live workers (%s); the tool list stays as it is", exc)
            return False
        changed = self.apply(served)
        if changed:
            await self.notify()
        return changed

    async def watch(self, every_s: float) -> None:
        import anyio

        while True:
            await anyio.sleep(every_s)
            await self.refresh()


def build_server(settings: Settings, tools: HgqTools | None = None) -> Any:
    from mcp.server.lowlevel.server import NotificationOptions
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.subscriptions import InMemorySubscriptionBus

    tools = tools or HgqTools(settings)
    bus = InMemorySubscriptionBus()
    served: ServedTools  # made once the server exists; the closures below read it at run time

    @contextlib.asynccontextmanager
    async def watching(_: Any) -> AsyncIterator[dict[str, Any]]:
        import anyio

        async with anyio.create_task_group() as tg:
            tg.start_soon(served.watch, settings.mcp_tools_poll_s)
            yield {}
            tg.cancel_scope.cancel()

    class HgqMcpServer(MCPServer):
        """Lists and calls the task tools as the live workers stand now, not as they stood at start."""

        async def list_tools(self) -> Any:
            await served.refresh()
            return await super().list_tools()

        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
            if name != "ask":
                await served.refresh()
                if name not in served.names:
                    raise ToolError(f"no live hgq worker serves the tool {name!r} now (see `hgq status`; "
                                    "tools/list shows what is served)")
            return await super().call_tool(name, arguments, context)

    server = HgqMcpServer(name="hgq", subscriptions=bus, lifespan=watching,
                          middleware=[lambda ctx, call_next: served.remember_session(ctx, call_next)], instructions=(
        "hgq runs AI tasks on text, images and audio with local or hosted models. `ask` plans and runs a "
        "whole request and writes the answer; the other tools run one task each. Pass files as base64."))

    def ask(request: Annotated[str, Field(min_length=1, max_length=20_000, description="what you want done")],
            files: Annotated[list[McpFile] | None, Field(description="images or audio the request refers to "
                                                                      "by name")] = None) -> list[Any]:
        """Plan and run a whole request (several tasks if needed) and return the written answer and any files."""
        with tool_errors():
            return result_content(tools, tools.ask(request, files or []))

    server.add_tool(ask, name="ask")
    served = ServedTools(server, tools, bus)
    # handshake-era clients learn from the capabilities that the tool list changes (2026-07-28 ones
    # see it from the listen handler); the SDK takes these options only where a server is run
    lowlevel = server._lowlevel_server
    initialization = lowlevel.create_initialization_options
    lowlevel.create_initialization_options = functools.partial(  # type: ignore[method-assign]
        initialization, NotificationOptions(tools_changed=True))
    served.apply(tools.served_task_types())  # at start: Redis must answer (a clear error otherwise)
    return server
