"""prometheus_client multiprocess mode for prefork workers: folders, activation, merging.

This module creates no metric, so it can run before `monitoring.metrics` is imported
(`activate_multiprocess` must: a metric created earlier would keep its values in memory).

Layout on one host: `<base>/w<pid>/` per worker main process (PROMETHEUS_MULTIPROC_DIR of
that process and its pool children). `DirCollector(base)` merges every folder.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKER_DIR = re.compile(r"^w(\d+)$")


def metrics_base(settings: Any = None) -> Path:
    """The folder whose sub-folders the workers of this host write their metric files into."""
    if settings is None:
        from shared.settings import get_settings

        settings = get_settings()
    return Path(settings.metrics_dir) if settings.metrics_dir else Path(settings.home) / "metrics"


from shared.llm_server import pid_alive  # noqa: E402,F401  (re-exported for monitoring's callers)


def prune_dead(base: Path) -> None:
    """Remove the folders of worker main processes that are gone (same host only)."""
    for sub in base.glob("w*"):
        m = WORKER_DIR.match(sub.name)
        if m and sub.is_dir() and not pid_alive(int(m.group(1))):
            shutil.rmtree(sub, ignore_errors=True)


def activate_multiprocess(base: Path) -> Path:
    """Make this process (and its forked children) write metrics under `base/w<pid>`."""
    base.mkdir(parents=True, exist_ok=True)
    prune_dead(base)
    own = base / f"w{os.getpid()}"
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(own)
    import prometheus_client.values as values

    values.ValueClass = values.get_value_class()  # in case prometheus_client was imported before
    return own


def mark_dead(pid: int) -> None:
    """A pool child exits: its live gauges (tasks in progress) must stop counting."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)


def remove_own_dir() -> None:
    path = os.environ.get(MULTIPROC_ENV)
    if path and WORKER_DIR.match(Path(path).name) and Path(path).name == f"w{os.getpid()}":
        shutil.rmtree(path, ignore_errors=True)


class DirCollector:
    """Merge the metric files of every worker process under `base` (and one level of folders)."""

    def __init__(self, base: Path):
        self.base = Path(base)

    def _files(self) -> list[str]:
        files = glob.glob(str(self.base / "*.db")) + glob.glob(str(self.base / "*" / "*.db"))
        out = []
        for f in files:
            parts = os.path.basename(f)[:-3].split("_")
            # live gauges of processes killed without bookkeeping (SIGKILL): ignore
            if (parts[0] == "gauge" and len(parts) > 2 and parts[1].startswith("live") and parts[-1].isdigit()
                    and not pid_alive(int(parts[-1]))):
                continue
            out.append(f)
        return out

    def collect(self) -> Iterable[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        for _ in range(3):  # a worker may remove its folder while we read
            try:
                return MultiProcessCollector.merge(self._files(), accumulate=True)
            except FileNotFoundError:
                continue
        return []


def workers_registry(base: Path | None = None) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DirCollector(base or metrics_base()))
    return registry
