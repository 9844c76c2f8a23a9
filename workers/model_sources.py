"""Experts that are configured rather than coded, registered by a pool's worker before it announces
what it serves:

* user models from HGQ_MODELS_FILE (shared/custom_models.py): a Python function of yours, a
  Hugging Face model by repo id, any endpoint URL speaking the HF inference protocol, or
  weights on this machine run by transformers or diffusers (workers/hf_local/);
* with HF_TOKEN set, remote candidates from the model catalogue: the HGQ_REMOTE_MODELS_PER_TASK
  most popular catalogue models of each of the pool's task types (HGQ_HF_REMOTE=missing: only the
  task types no local or user model serves; all: every task type).

Without HF_TOKEN and without a models file nothing is added: the offline default is unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError

from shared.catalog import TASK_TYPES
from shared.custom_models import AnyModel, DiffusersModel, PythonModel, TransformersModel, load_models_file
from shared.errors import ConfigError
from shared.outputs import ExpertResult
from shared.registry import ServedModel
from shared.settings import Settings
from workers.expert import Expert, InputValue, expert_classes, register
from workers.pools import serving_experts
from workers.remote.calls import CALLS
from workers.remote.experts import remote_expert_class

log = logging.getLogger(__name__)
_registered: set[str] = set()


def register_model_sources(pool: str, settings: Settings) -> None:
    """Register the pool's user models and remote candidates, once per process.

    ConfigError (a worker refuses to start) for an invalid models file or a callable that cannot
    be imported."""
    if pool in _registered or pool not in {t.pool for t in TASK_TYPES.values()}:
        return
    taken = {cls.model_id for cls in serving_experts(pool, settings)}  # imports the pool's modules
    taken |= {cls.model_id for cls in expert_classes()}
    specs = load_models_file(settings.models_file) if settings.models_file else []
    for spec in specs:
        if spec.served_pool != pool:
            continue
        if spec.id in taken:
            raise ConfigError(f"HGQ_MODELS_FILE {settings.models_file}: model '{spec.id}' is already served "
                              "by a built-in expert: give yours another id")
        register(custom_expert_class(spec))
        taken.add(spec.id)
    if settings.hf_token and settings.hf_token.get_secret_value() and settings.hf_remote != "off":
        for cls in catalogue_remote_classes(pool, settings):
            if cls.model_id not in taken:
                register(cls)
                taken.add(cls.model_id)
    _registered.add(pool)


def custom_expert_class(spec: AnyModel) -> type[Expert]:
    if isinstance(spec, TransformersModel | DiffusersModel):
        from workers.hf_local.experts import local_expert_class

        return local_expert_class(spec)
    if isinstance(spec, PythonModel):
        func = resolve_callable(spec.callable, spec.id)
        attrs = {"model_id": spec.id, "task": spec.task, "pool": spec.served_pool, "description": spec.description,
                 "func": staticmethod(func), "__module__": __name__}
        return type("Python_" + re.sub(r"\W", "_", spec.id), (PythonExpert,), attrs)
    return remote_expert_class(spec.id, spec.task, spec.served_pool, spec.backend, spec.target, spec.description,
                               spec.timeout_s, spec.token_env)


def catalogue_remote_classes(pool: str, settings: Settings) -> list[type[Expert]]:
    """The most popular catalogue models of the pool's task types, served by HF inference."""
    from shared.model_catalog import entries, rank

    served = {cls.task for cls in serving_experts(pool, settings)} if settings.hf_remote == "missing" else set()
    out: list[type[Expert]] = []
    for task, spec in TASK_TYPES.items():
        if spec.pool != pool or spec.diagnostic or task not in CALLS or task in served:
            continue
        models = [ServedModel(model_id=e.id, task=task, backend="hf-inference") for e in entries(task) if not e.local]
        for model in rank(models, "")[: settings.remote_models_per_task]:  # popularity order
            out.append(remote_expert_class(model.model_id, task, pool, "hf-inference", model.model_id))
    return out


# --- python callables ------------------------------------------------------------------------------
class PythonExpert(Expert):
    """A user function f(inputs, params) -> ExpertResult | dict | str, run in the pool's worker.

    inputs: slot -> str (text) or workers.expert.Media (image/audio: .data bytes, .mime); params:
    the task's literal parameters. Raise shared.errors.ExpertError for a bad input (no retry) or
    TransientExpertError for a failure worth a retry."""

    backend: ClassVar[str] = "python"
    func: ClassVar[Callable[..., Any]]

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        return as_result(type(self).func(dict(inputs), dict(params)), self.model_id)


def as_result(value: Any, model_id: str) -> ExpertResult:
    if isinstance(value, ExpertResult):
        return value
    if isinstance(value, str):
        return ExpertResult(text=value)
    if isinstance(value, dict):
        try:
            return ExpertResult.model_validate(value)
        except ValidationError as exc:
            raise TypeError(f"{model_id} returned a dict that is not an ExpertResult: {exc}") from exc
    raise TypeError(f"{model_id} returned {type(value).__name__}; expected ExpertResult, dict or str")


def resolve_callable(target: str, model_id: str) -> Callable[..., Any]:
    """'package.module:function' (importable) or '/path/file.py:function'."""
    module_name, func_name = target.rsplit(":", 1)
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            name = "hgq_user_" + re.sub(r"\W", "_", path.stem)
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise FileNotFoundError(f"no such file {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raises, the worker must not start
        raise ConfigError(f"model '{model_id}': cannot import '{module_name}': {type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"model '{model_id}': '{module_name}' has no function '{func_name}'")
    return func
