"""Pydantic models of a request (what a client submits) and a run (what it can read back)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.outputs import ArtifactRef, TaskOutput
from shared.plan import PlanTask

RunStatus = Literal["accepted", "planning", "running", "responding", "succeeded", "failed", "cancelled"]
NodeStatus = Literal["pending", "queued", "running", "succeeded", "failed", "skipped", "cancelled"]
FINAL_RUN_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class RequestCreate(BaseModel):
    """A user request as submitted (CLI, API). `uploads` maps the names users refer to -> stored files."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20_000)
    uploads: dict[str, ArtifactRef] = Field(default_factory=dict)
    plan: list[PlanTask] | None = None
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{6,64}$")
    conversation_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    user: str = "local"
    source: Literal["api", "chat"] | None = None  # which HTTP endpoint took it (the history tells them apart)


# What each LLM stage is doing, in the words progress displays use (CLI, chat UIs).
STAGE_WORDS = {"plan": "planning", "select": "choosing models", "respond": "writing the answer"}


class ModelAttempt(BaseModel):
    """One run of one candidate model on a node, and what came of it."""

    model: str | None
    outcome: Literal["succeeded", "retry", "fallback", "failed"]  # retry: the same model again later;
    error: str | None = None  # fallback: the node moved on to its next candidate model
    seconds: float = 0.0
    worker: str | None = None


class NodeInfo(BaseModel):
    """Execution facts of one node, written by the worker that holds its lease."""

    queue: str | None = None
    worker: str | None = None
    model: str | None = None  # the model running (or that ran) the node: a fallback when the chosen one failed
    pid: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    retries: int = 0
    model_attempts: list[ModelAttempt] = Field(default_factory=list)


class TaskPublic(BaseModel):
    id: int
    task: str
    status: NodeStatus
    queue: str | None = None
    worker: str | None = None
    pid: int | None = None
    model: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0  # deliveries
    output: TaskOutput | None = None
    error: str | None = None
    fallbacks: list[str] = Field(default_factory=list)  # candidates after the selected model, in order
    model_attempts: list[ModelAttempt] = Field(default_factory=list)  # each model run: model, outcome, error


class ArtifactPublic(BaseModel):
    task: int
    id: str
    kind: str
    mime: str
    size: int
    path: str | None = None  # where the CLI wrote it locally


class StageUsage(BaseModel):
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


class RunPublic(BaseModel):
    """The whole state of a run: what `hgq ask --json` prints and the API returns."""

    request_id: str
    status: RunStatus
    request: str
    plan: list[dict[str, Any]] = Field(default_factory=list)
    tasks: dict[str, TaskPublic] = Field(default_factory=dict)
    response: str | None = None
    error: str | None = None
    artifacts: list[ArtifactPublic] = Field(default_factory=list)
    usage: dict[str, StageUsage] = Field(default_factory=dict)
    selection: dict[str, str] = Field(default_factory=dict)  # task id -> why that model
    created_at: float | None = None
    finished_at: float | None = None


class RunEvent(BaseModel):
    """One entry of a run's event stream."""

    id: str  # the stream id (usable as Last-Event-ID)
    type: str  # accepted | planned | task | done | error
    data: dict[str, Any]
