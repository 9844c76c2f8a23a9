"""Which expert modules each pool imports, and the models a pool can serve here."""

from __future__ import annotations

import importlib
import logging

from shared.catalog import TASK_TYPES
from shared.registry import ServedModel
from shared.settings import Settings
from workers.expert import Expert, expert_classes

log = logging.getLogger(__name__)

POOL_MODULES: dict[str, tuple[str, ...]] = {
    "text": ("workers.text.experts", "workers.text.llm_experts", "workers.text.embedding_experts",
             "workers.text.spacy_experts", "workers.text.apertium_experts"),
    "vision": ("workers.vision.experts", "workers.vision.classification_experts", "workers.vision.detection_experts",
               "workers.vision.segmentation_experts", "workers.vision.docqa_experts", "workers.vision.control_experts"),
    "audio": ("workers.audio.experts",),
}


def import_pool(pool: str) -> None:
    importlib.import_module("workers.diag")
    for module in POOL_MODULES.get(pool, ()):
        try:
            importlib.import_module(module)
        except ImportError as exc:  # a pool without its optional packages still serves the rest
            log.warning("pool %s: cannot import %s: %s", pool, module, exc)


def serving_experts(pool: str, settings: Settings) -> list[type[Expert]]:
    """Experts of this pool that can run in this install (diagnostics only when enabled)."""
    import_pool(pool)
    out = []
    for cls in expert_classes(pool):
        spec = TASK_TYPES.get(cls.task)
        if spec is None or (spec.diagnostic and not settings.diagnostics):
            continue
        reason = cls.unavailable_reason()
        if reason:
            log.info("pool %s: %s unavailable: %s", pool, cls.model_id, reason)
            continue
        out.append(cls)
    return out


def served_models(pool: str, settings: Settings) -> list[ServedModel]:
    return [ServedModel(model_id=c.model_id, task=c.task, backend=c.backend, description=c.description,
                        required_params=sorted(c.required_params),
                        param_choices={k: sorted(v) for k, v in c.param_choices.items()})
            for c in serving_experts(pool, settings)]
