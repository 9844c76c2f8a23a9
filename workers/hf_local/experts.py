"""LocalModelExpert: one transformers or diffusers model of HGQ_MODELS_FILE, run in its pool's worker.

It answers through the same calls as a remote model (workers/remote/calls.py) over a local
client (pipeline_client / diffusers_client), so outputs have the same types either way.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from shared.custom_models import DiffusersModel, TransformersModel
from shared.outputs import ExpertResult
from workers.expert import Expert, InputValue
from workers.remote.calls import CALLS

PACKAGES = {"transformers": ("torch", "transformers"), "diffusers": ("torch", "diffusers", "transformers")}


class LocalModelExpert(Expert):
    spec: ClassVar[TransformersModel | DiffusersModel]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        from workers.hf_local.weights import weights_missing

        missing = [p for p in PACKAGES[cls.spec.backend] if importlib.util.find_spec(p) is None]
        if missing:
            return f"python package(s) {', '.join(missing)} not installed (pip install -e '.[gpu]' or '.[models]')"
        if cls.task not in CALLS:
            return f"no call maps task type '{cls.task}'"
        refs = [cls.spec.weights] + ([cls.spec.controlnet] if isinstance(cls.spec, DiffusersModel)
                                     and cls.spec.controlnet else [])
        return next((reason for ref in refs if (reason := weights_missing(ref))), None)

    def _load(self) -> None:
        spec = self.spec
        if isinstance(spec, DiffusersModel):
            from workers.hf_local.diffusers_client import DiffusersClient, load_diffusers

            pipe, device = load_diffusers(spec)
            self._client: Any = DiffusersClient(pipe, spec, device)
        else:
            from workers.hf_local.pipeline_client import PipelineClient, load_pipeline
            from workers.hf_local.weights import pick_device, pick_dtype, weights_dir

            device = pick_device(spec.device)
            assert spec.pipeline is not None  # the models file fills it in
            pipe = load_pipeline(spec.pipeline, weights_dir(spec.weights), device, pick_dtype(spec.dtype, device),
                                 spec.batch_size)
            self._client = PipelineClient(pipe, spec.options)

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        self.ensure_loaded()
        return CALLS[self.task](self._client, inputs, params)


def local_expert_class(spec: TransformersModel | DiffusersModel) -> type[LocalModelExpert]:
    attrs = {"model_id": spec.id, "task": spec.task, "pool": spec.served_pool, "backend": spec.backend,
             "description": spec.description or f"{spec.backend} {spec.task} model {spec.weights}", "spec": spec,
             "__module__": __name__}
    return type("Local_" + re.sub(r"\W", "_", spec.id), (LocalModelExpert,), attrs)
