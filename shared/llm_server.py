"""The embedded local LLM's server process on a loopback port, one per machine, shared by every
hgq process through `shared.local_llm`. Two servers can run it:

* llama.cpp's own `llama-server` (built by `make setup` from the sources inside the
  llama-cpp-python sdist, into the venv's bin/): N parallel slots with continuous batching, so
  N users' calls are generated together; its prompt cache lives in RAM (--cache-ram);
* `python -m llama_cpp.server` (llama-cpp-python): one request at a time, with hgq's prompt
  caches installed (`shared.llm_prompt_cache`), on disk so they survive restarts.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ConfigError, LLMError
from shared.llm_model_file import model_spec

if TYPE_CHECKING:
    from shared.settings import Settings

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


def llama_server_binary(choice: str = "auto") -> Path | None:
    """llama.cpp's server binary for HGQ_LOCAL_LLM_SERVER (`auto`: use it when `make setup` built
    it); None means llama-cpp-python's one-request-at-a-time server."""
    if choice == "python":
        return None
    beside = Path(sys.executable).parent / "llama-server"
    found = beside if beside.is_file() and os.access(beside, os.X_OK) else None
    if found is None and (on_path := shutil.which("llama-server")):
        found = Path(on_path)
    if found is None and choice == "llama-server":
        raise ConfigError("HGQ_LOCAL_LLM_SERVER=llama-server, but no llama-server binary is built: run "
                          "`make setup` (it builds one into the venv), or set HGQ_LOCAL_LLM_SERVER=python")
    return found


def _die_with(parent: int) -> Callable[[], None]:
    """For Popen(preexec_fn=...): the child gets SIGTERM when its parent thread exits (Linux)."""
    def hook() -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(0)
    return hook


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


def serves(base_url: str, alias: str, timeout: float = 2.0) -> bool:
    try:
        data = _get_json(base_url + "/models", timeout)
    except (OSError, ValueError, urllib.error.URLError):
        return False
    ids = [m.get("id") for m in data.get("data", [])] if isinstance(data, dict) else []
    return alias in ids


@dataclass
class LocalLLMServer:
    """The local LLM server on a loopback port, as a context manager or start()/stop(): llama.cpp's
    `llama-server` when `binary` is set (with `parallel` slots), else `python -m llama_cpp.server`.

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
    binary: Path | None = None  # llama.cpp's llama-server; None: llama-cpp-python's server
    parallel: int = 1  # llama-server slots (calls generated at once, each with n_ctx tokens)
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
            "binary": llama_server_binary(settings.local_llm_server),
            "parallel": settings.local_llm_parallel,
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

    @property
    def slots(self) -> int:
        return self.parallel if self.binary is not None else 1

    def command(self) -> list[str]:
        threads = self.n_threads or default_threads()
        if self.binary is not None:
            return [
                str(self.binary), "--model", str(self.model_path), "--alias", self.alias,
                "--host", self.host, "--port", str(self.port),
                "--ctx-size", str(self.n_ctx * self.parallel), "--parallel", str(self.parallel),
                "--threads", str(threads), "--threads-batch", str(threads),
                "--cache-ram", str(self.cache_mb), "--no-ui", "--metrics", *self.extra_args,
            ]  # fmt: skip
        args = [
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(threads),
            "--n_threads_batch", str(threads),
            # queue a call that arrives while another streams, instead of cutting that one off
            "--interrupt_requests", "False",
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
        if self.binary is None and importlib.util.find_spec("llama_cpp") is None:
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
        native = self.binary is not None and self.die_with_parent
        self.process = subprocess.Popen(
            self.command(),
            preexec_fn=_die_with(os.getpid()) if native else None,  # noqa: PLW1509 (prctl only)
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
            if serves(self.base_url, self.alias, timeout=1.0):
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


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (signal 0 probes without touching it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
