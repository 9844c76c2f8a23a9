"""One uniform schema for what every task produces, so any output can feed any later task."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

MediaKind = Literal["image", "audio", "video"]


class ArtifactRef(BaseModel):
    """A stored file (image, audio, video), passed by reference: never as a broker payload."""

    id: str = Field(description="sha256 of the content (content-addressed)")
    mime: str
    kind: MediaKind
    size: int
    name: str | None = None


class Label(BaseModel):
    label: str
    score: float


class Box(BaseModel):
    label: str
    score: float
    x: int
    y: int
    width: int
    height: int


class TaskOutput(BaseModel):
    """What a task produced. `text` is the main textual result; media are artifact refs."""

    text: str | None = None
    labels: list[Label] = Field(default_factory=list)
    boxes: list[Box] = Field(default_factory=list)
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)

    def as_text(self) -> str | None:
        """The text a later text task consumes: text, else labels or boxes in words."""
        if self.text is not None:
            return self.text
        if self.labels:
            return ", ".join(f"{lab.label} ({lab.score:.2f})" for lab in self.labels)
        if self.boxes:
            return ", ".join(f"{box.label} at ({box.x},{box.y},{box.width}x{box.height})" for box in self.boxes)
        return None

    def artifact(self, kind: MediaKind) -> ArtifactRef | None:
        return next((ref for ref in self.artifacts if ref.kind == kind), None)


class MediaBlob(BaseModel):
    """Raw media an expert returns; the worker stores it and replaces it by an ArtifactRef."""

    data: bytes
    mime: str
    kind: MediaKind
    name: str | None = None


class ExpertResult(BaseModel):
    """What an expert returns: TaskOutput fields plus raw media still to be stored."""

    text: str | None = None
    labels: list[Label] = Field(default_factory=list)
    boxes: list[Box] = Field(default_factory=list)
    media: list[MediaBlob] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
