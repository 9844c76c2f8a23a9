"""Request and response bodies of the API (the OpenAI facade's included), and their limits."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.plan import PlanTask

STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
ARTIFACT_ID = re.compile(r"^[0-9a-f]{64}$")
CONVERSATION_PATTERN = r"^[A-Za-z0-9_-]{1,48}$"
CONVERSATION_ID = re.compile(CONVERSATION_PATTERN)
MAX_TEXT = 20_000


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

