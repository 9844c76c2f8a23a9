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
      - id: Salesforce/blip-image-captioning-base
        task: image-to-text
        backend: transformers                # a transformers.pipeline on this machine (weights on disk)
        device: cuda:0                       # auto (cuda:0 when there is a GPU) | cpu | cuda:N | mps
        dtype: float16                       # auto | float32 | float16 | bfloat16
      - id: lllyasviel/sd-controlnet-openpose
        task: openpose-text-to-image
        backend: diffusers                   # a diffusers pipeline: text-to-image, image-to-image,
        model: runwayml/stable-diffusion-v1-5  # ControlNet (X-text-to-image), text-to-video
        controlnet: lllyasviel/sd-controlnet-openpose
        steps: 20
        seed: 7

`model` (transformers, diffusers) is a Hub repo id or a folder; weights load from HGQ_MODEL_DIR
(`<org>--<name>` folders), the Hugging Face cache, or that folder, never from the network
(`hgq models download` fetches them on a machine with network).

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

from shared.catalog import CONTROLS, TASK_TYPES, Pool
from shared.errors import ConfigError

BACKENDS = ("python", "hf-inference", "endpoint", "transformers", "diffusers")

# hgq task type -> the transformers pipeline that serves it (`pipeline:` overrides it)
TRANSFORMERS_PIPELINES = {
    "text-classification": "text-classification", "language-detection": "text-classification",
    "token-classification": "token-classification", "question-answering": "question-answering",
    "sentence-similarity": "feature-extraction", "summarization": "summarization", "translation": "translation",
    "conversational": "text-generation", "text-generation": "text-generation",
    "text2text-generation": "text2text-generation",
    "image-to-text": "image-to-text", "image-classification": "image-classification",
    "object-detection": "object-detection", "image-segmentation": "image-segmentation",
    "depth-estimation": "depth-estimation", "depth-control": "depth-estimation", "seg-control": "image-segmentation",
    "visual-question-answering": "visual-question-answering",
    "document-question-answering": "document-question-answering",
    "automatic-speech-recognition": "automatic-speech-recognition", "text-to-speech": "text-to-speech",
    "audio-classification": "audio-classification",
}
CONTROL_TEXT_TO_IMAGE = frozenset(f"{name}-text-to-image" for name in CONTROLS)
DIFFUSERS_TASKS = frozenset({"text-to-image", "image-to-image", "text-to-video"}) | CONTROL_TEXT_TO_IMAGE


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


class _LocalModel(_ModelBase):
    """Weights on this machine, run in the pool's worker process."""

    model: str | None = Field(None, min_length=1)  # a Hub repo id or a folder; default: id
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    options: dict[str, Any] = Field(default_factory=dict)  # extra keyword arguments of each call

    @property
    def weights(self) -> str:
        return self.model or self.id


class TransformersModel(_LocalModel):
    """Any transformers.pipeline task (captioning, VQA, detection, depth, ASR, summarisation...)."""

    backend: Literal["transformers"]
    pipeline: str | None = Field(None, pattern=r"^[a-z0-9-]+$")  # default: TRANSFORMERS_PIPELINES[task]
    batch_size: int = Field(1, ge=1, le=256)

    @model_validator(mode="after")
    def _pipeline_of_task(self) -> TransformersModel:
        if self.pipeline is None:
            default = TRANSFORMERS_PIPELINES.get(self.task)
            if default is None:
                other = " (use backend: diffusers)" if self.task in DIFFUSERS_TASKS else ""
                raise ValueError(f"the transformers backend does not serve task '{self.task}'{other}; it serves "
                                 + ", ".join(sorted(TRANSFORMERS_PIPELINES)))
            object.__setattr__(self, "pipeline", default)
        return self

    @property
    def target(self) -> str:
        return self.weights


class DiffusersModel(_LocalModel):
    """A diffusers pipeline: text-to-image, image-to-image, ControlNet (X-text-to-image), text-to-video."""

    backend: Literal["diffusers"]
    controlnet: str | None = Field(None, min_length=1)  # the ControlNet's repo id or folder (X-text-to-image)
    steps: int = Field(25, ge=1, le=500)
    seed: int | None = Field(None, ge=0)
    guidance_scale: float | None = Field(None, ge=0, le=50)
    width: int | None = Field(None, ge=8, le=4096, multiple_of=8)
    height: int | None = Field(None, ge=8, le=4096, multiple_of=8)
    num_frames: int | None = Field(None, ge=1, le=1024)  # text-to-video
    fps: int = Field(8, ge=1, le=120)  # text-to-video

    @model_validator(mode="after")
    def _fits_task(self) -> DiffusersModel:
        if self.task not in DIFFUSERS_TASKS:
            raise ValueError(f"the diffusers backend does not serve task '{self.task}'; it serves "
                             + ", ".join(sorted(DIFFUSERS_TASKS)))
        if self.task in CONTROL_TEXT_TO_IMAGE and self.controlnet is None:
            raise ValueError(f"task '{self.task}' needs a ControlNet: add controlnet: <repo id or folder>")
        if self.controlnet is not None and self.task not in CONTROL_TEXT_TO_IMAGE:
            raise ValueError(f"controlnet is for the X-text-to-image tasks, not '{self.task}'")
        if self.num_frames is not None and self.task != "text-to-video":
            raise ValueError("num_frames is for text-to-video")
        return self

    @property
    def target(self) -> str:
        return self.weights


AnyModel = PythonModel | HFInferenceModel | EndpointModel | TransformersModel | DiffusersModel
CustomModel = Annotated[AnyModel, Field(discriminator="backend")]
# (cast: mypy cannot read an Annotated union as a type form; the annotation carries the type)
_ENTRY: TypeAdapter[AnyModel] = TypeAdapter(cast(Any, CustomModel))
_FIELDS: dict[str, type[BaseModel]] = {"python": PythonModel, "hf-inference": HFInferenceModel, "endpoint": EndpointModel,
                                       "transformers": TransformersModel, "diffusers": DiffusersModel}


def load_models_file(path: Path | str) -> list[AnyModel]:
    """The validated entries of a models file; ConfigError listing every problem otherwise."""
    path = Path(path).expanduser()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"HGQ_MODELS_FILE {path}: cannot read it: {exc.strerror or exc}") from exc
    return list(_load(str(path.resolve()), stamp))


@lru_cache(maxsize=4)
def _load(path: str, _stamp: int) -> tuple[AnyModel, ...]:
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
    models: list[AnyModel] = []
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
        elif isinstance(model, _LocalModel):
            model = _anchor_folders(model, Path(path).parent)
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


def _anchor_folders(model: TransformersModel | DiffusersModel, base: Path) -> TransformersModel | DiffusersModel:
    """`model` / `controlnet` given as ./folder (relative to the YAML file's folder) become absolute."""
    update = {}
    for field in ("model", "controlnet"):
        value = getattr(model, field, None)
        if isinstance(value, str) and value.startswith(("./", "../", "~")):
            update[field] = str((base / Path(value).expanduser()).resolve())
    return model.model_copy(update=update) if update else model
