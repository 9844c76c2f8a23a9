"""User models from a YAML file (HGQ_MODELS_FILE): validated here, registered as experts by workers.

    models:
      - id: me/reverse-words                 # the id the registry, the planner and the run show
        task: text2text-generation           # a task type of shared/catalog.py
        backend: python                      # python | hf-inference | endpoint
        callable: ./my_models.py:reverse     # "package.module:function" or "file.py:function"
        description: reverses the order of the words of a text
      - id: my-detr
        task: object-detection
        backend: endpoint                    # anything speaking the HF inference protocol (TGI, ...)
        url: https://xyz.endpoints.huggingface.cloud
        timeout_s: 60
      - id: facebook/detr-resnet-50
        task: object-detection
        backend: hf-inference                # Hugging Face inference by repo id (`repo`, default: id)

`pool` defaults to the task type's pool (giving another one is an error: a task runs on its pool).
Every problem of the file is reported at once, naming the file, the entry and the field; a worker
refuses to start on an invalid file.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from shared.catalog import TASK_TYPES, Pool
from shared.errors import ConfigError

BACKENDS = ("python", "hf-inference", "endpoint")


class _ModelBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
    task: str
    pool: Pool | None = None
    description: str = ""

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        spec = TASK_TYPES.get(task)
        if spec is None or spec.diagnostic:
            known = ", ".join(n for n, t in TASK_TYPES.items() if not t.diagnostic)
            raise ValueError(f"unknown task type '{task}' (known: {known})")
        return task

    @model_validator(mode="after")
    def _pool_of_task(self) -> _ModelBase:
        pool = TASK_TYPES[self.task].pool
        if self.pool is None:
            object.__setattr__(self, "pool", pool)
        elif self.pool != pool:
            raise ValueError(f"task '{self.task}' runs on the {pool} pool, not '{self.pool}' (leave pool out)")
        return self

    @property
    def served_pool(self) -> str:
        return self.pool or TASK_TYPES[self.task].pool


class PythonModel(_ModelBase):
    """A function of yours, called in the pool's worker as f(inputs, params)."""

    backend: Literal["python"]
    callable: str  # "package.module:function" or "path/to/file.py:function"

    @field_validator("callable")
    @classmethod
    def _target(cls, value: str) -> str:
        if not re.fullmatch(r"[^:\s]+:[A-Za-z_][A-Za-z0-9_]*", value.strip()):
            raise ValueError(f"'{value}' is not 'package.module:function' or 'path/to/file.py:function'")
        return value.strip()


class _RemoteModel(_ModelBase):
    timeout_s: float | None = Field(None, gt=0)  # default HGQ_REMOTE_TIMEOUT_S
    token_env: str | None = None  # environment variable holding the token to send (default HF_TOKEN)


class HFInferenceModel(_RemoteModel):
    """A Hugging Face model run by Hugging Face inference (huggingface_hub.InferenceClient)."""

    backend: Literal["hf-inference"]
    repo: str | None = None  # the Hub repo id; default: id

    @property
    def target(self) -> str:
        return self.repo or self.id


class EndpointModel(_RemoteModel):
    """Any server speaking the Hugging Face inference protocol, by URL (TGI, Inference Endpoints...)."""

    backend: Literal["endpoint"]
    url: str

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+\S*", value.strip()):
            raise ValueError(f"'{value}' is not an http:// or https:// URL")
        return value.strip()

    @property
    def target(self) -> str:
        return self.url


CustomModel = Annotated[PythonModel | HFInferenceModel | EndpointModel, Field(discriminator="backend")]
# (cast: mypy cannot read an Annotated union as a type form; the annotation carries the type)
_ENTRY: TypeAdapter[PythonModel | HFInferenceModel | EndpointModel] = TypeAdapter(cast(Any, CustomModel))
_FIELDS: dict[str, type[BaseModel]] = {"python": PythonModel, "hf-inference": HFInferenceModel, "endpoint": EndpointModel}


def load_models_file(path: Path | str) -> list[PythonModel | HFInferenceModel | EndpointModel]:
    """The validated entries of a models file; ConfigError listing every problem otherwise."""
    path = Path(path).expanduser()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"HGQ_MODELS_FILE {path}: cannot read it: {exc.strerror or exc}") from exc
    return list(_load(str(path.resolve()), stamp))


@lru_cache(maxsize=4)
def _load(path: str, _stamp: int) -> tuple[PythonModel | HFInferenceModel | EndpointModel, ...]:
    import yaml

    where = f"HGQ_MODELS_FILE {path}"
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    if raw is None:
        return ()
    if isinstance(raw, dict):
        extra = sorted(str(k) for k in raw if k != "models")
        if extra:
            raise ConfigError(f"{where}: unknown top-level key(s) {', '.join(map(repr, extra))} (expected 'models')")
        raw = raw.get("models") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of models (or 'models:' with a list), got {type(raw).__name__}")
    problems: list[str] = []
    models: list[PythonModel | HFInferenceModel | EndpointModel] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw, start=1):
        label = _label(index, entry)
        if not isinstance(entry, dict):
            problems.append(f"{label}: expected a mapping with id, task, backend, ...")
            continue
        try:
            model = _ENTRY.validate_python(entry)
        except ValidationError as exc:
            problems.extend(f"{label}: {_problem(err, entry)}" for err in exc.errors())
            continue
        if model.id in seen:
            problems.append(f"{label}: duplicate id '{model.id}' (also entry {seen[model.id]})")
            continue
        seen[model.id] = index
        if isinstance(model, PythonModel):
            model = model.model_copy(update={"callable": _anchor(model.callable, Path(path).parent)})
        models.append(model)
    if problems:
        raise ConfigError(f"{where} is invalid:\n  " + "\n  ".join(problems))
    return tuple(models)


def _label(index: int, entry: Any) -> str:
    model_id = entry.get("id") if isinstance(entry, dict) else None
    return f"entry {index}" + (f" ('{model_id}')" if model_id else "")


def _problem(err: Any, entry: dict[str, Any]) -> str:
    kind, loc, msg = err["type"], [str(p) for p in err["loc"]], err["msg"]
    if loc and loc[0] in _FIELDS:  # the discriminated union puts the backend first
        loc = loc[1:]
    field = ".".join(loc)
    backend = entry.get("backend")
    if kind == "union_tag_not_found":
        return f"missing key 'backend' (one of {', '.join(BACKENDS)})"
    if kind == "union_tag_invalid":
        return f"backend: '{backend}' is not one of {', '.join(BACKENDS)}"
    if kind == "extra_forbidden":
        allowed = ", ".join(_FIELDS[backend].model_fields) if backend in _FIELDS else ""
        return f"unknown key '{field}'" + (f" (a {backend} model takes: {allowed})" if allowed else "")
    if kind == "missing":
        return f"missing key '{field}'"
    msg = msg.removeprefix("Value error, ")
    return f"{field}: {msg}" if field else msg


def _anchor(target: str, base: Path) -> str:
    """A 'file.py:function' relative to the YAML file's folder becomes absolute."""
    module, func = target.rsplit(":", 1)
    if module.endswith(".py") and not Path(module).expanduser().is_absolute():
        module = str((base / module).resolve())
    return f"{module}:{func}"
