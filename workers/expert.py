"""The contract every expert model implements, and the per-process registry of experts.

An expert is one model serving one task type on one pool. Experts never touch Redis or
Celery: they get resolved inputs (text, or media bytes) and return an ExpertResult; the node
runner stores media as artifacts. Models load once per worker process (`load`, cached).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from shared.outputs import ExpertResult


@dataclass(frozen=True)
class Media:
    data: bytes
    mime: str
    name: str | None = None


InputValue = str | Media


class Expert(ABC):
    """Subclass, set the class attributes, implement `_load` and `run`, decorate with @register."""

    model_id: ClassVar[str]  # e.g. "openai/whisper-base" (a Hugging Face repo id where one exists)
    task: ClassVar[str]  # a task type of shared.catalog
    pool: ClassVar[str]
    description: ClassVar[str] = ""
    backend: ClassVar[str] = "local"
    # What selection needs to know to route a task's literal args to a model that understands them.
    required_params: ClassVar[frozenset[str]] = frozenset()
    param_choices: ClassVar[Mapping[str, frozenset[str]]] = {}  # arg -> accepted values (lowercase)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this expert can run in this install; else why not (cheap: no model load)."""
        return None

    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:  # noqa: B027 - optional hook
        """Load weights; called once per process."""

    @abstractmethod
    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        """Run the model. Raise ExpertError (bad input, permanent) or TransientExpertError."""


_EXPERT_CLASSES: dict[str, type[Expert]] = {}
_INSTANCES: dict[str, Expert] = {}
_INSTANCES_LOCK = threading.Lock()


def register(cls: type[Expert]) -> type[Expert]:
    _EXPERT_CLASSES[cls.model_id] = cls
    return cls


def expert_classes(pool: str | None = None) -> list[type[Expert]]:
    return [c for c in _EXPERT_CLASSES.values() if pool is None or c.pool == pool]


def get_expert(model_id: str) -> Expert:
    """The process-wide instance of an expert (created once)."""
    with _INSTANCES_LOCK:
        inst = _INSTANCES.get(model_id)
        if inst is None:
            inst = _EXPERT_CLASSES[model_id]()
            _INSTANCES[model_id] = inst
        return inst
