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
import inspect
import time
from collections.abc import Callable, Iterator
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
    call.__name__ = task.name.replace("-", "_")
    return call


def build_server(settings: Settings, tools: HgqTools | None = None) -> Any:
    from mcp.server.mcpserver import MCPServer

    tools = tools or HgqTools(settings)
    server = MCPServer(name="hgq", instructions=(
        "hgq runs AI tasks on text, images and audio with local or hosted models. `ask` plans and runs a "
        "whole request and writes the answer; the other tools run one task each. Pass files as base64."))

    def ask(request: Annotated[str, Field(min_length=1, max_length=20_000, description="what you want done")],
            files: Annotated[list[McpFile] | None, Field(description="images or audio the request refers to "
                                                                      "by name")] = None) -> list[Any]:
        """Plan and run a whole request (several tasks if needed) and return the written answer and any files."""
        with tool_errors():
            return result_content(tools, tools.ask(request, files or []))

    server.add_tool(ask, name="ask")
    for task in tools.served_task_types():
        server.add_tool(task_tool(tools, task), name=task.name.replace("-", "_"),
                        description=f"{task.description} (task type {task.name}, runs on hgq's {task.pool} workers)")
    return server
