"""Structured logs: one JSON object per line, with the request id and task id on every line.

Where the ids come from, in order:
  1. `extra={"request_id": ..., "task_id": ...}` given to the log call;
  2. the Celery task executing in this thread/process (`celery.current_task`): node task ids
     are `{run_id}.{node}`, the stages `{run_id}.plan` / `{run_id}.respond`, so the request id
     is the part before the first dot;
  3. Celery's own worker messages ("Task ...[id] received/succeeded"), whose arguments carry
     the task id even outside the task;
  4. `bind_request_id(...)` / `request_id_var` in the planner API (set it per HTTP request).

So `jq 'select(.request_id=="<id>")'` over the logs of the planner and all workers follows one
request end to end.

Workers: `monitoring.celery_hooks` connects Celery's `setup_logging` signal to
`setup_logging`, so Celery leaves logging to us in the main process and in every pool child.
Other processes (the API) call `setup_logging()` once at start.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

#: The request (run) id of the code running now, outside Celery tasks (the planner API).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("hgq_request_id", default=None)

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_OURS = frozenset({"request_id", "task_id", "task_name", "pool"})
_HANDLER_NAME = "hgq"


def run_id_of(task_id: str | None) -> str | None:
    """`{run_id}.{node}` / `{run_id}.plan` / `{run_id}.respond` -> run_id (run ids have no dot)."""
    if not task_id:
        return None
    return task_id.split(".", 1)[0] if "." in task_id else None


@contextlib.contextmanager
def bind_request_id(request_id: str | None) -> Iterator[None]:
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


def _current_task() -> Any:
    try:
        from celery._state import get_current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return None
    return get_current_task()


class ContextFilter(logging.Filter):
    """Adds `request_id`, `task_id`, `task_name` and `pool` to every record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        task_id = getattr(record, "task_id", None)
        task_name = getattr(record, "task_name", None)
        if task_id is None:
            task = _current_task()
            request = getattr(task, "request", None) if task is not None else None
            if request is not None and getattr(request, "id", None):
                task_id, task_name = request.id, task_name or getattr(task, "name", None)
            elif isinstance(record.args, Mapping) and "id" in record.args:  # celery's "Task %(name)s[%(id)s] ..."
                task_id = str(record.args["id"])
                task_name = task_name or (str(record.args["name"]) if "name" in record.args else None)
        record.task_id = task_id
        record.task_name = task_name
        if getattr(record, "request_id", None) is None:
            record.request_id = run_id_of(task_id) or request_id_var.get()
        if getattr(record, "pool", None) is None:
            record.pool = os.environ.get("HGQ_WORKER_POOL")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, msg, ids, process; extras kept."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "task_id": getattr(record, "task_id", None),
            "task_name": getattr(record, "task_name", None),
            "pool": getattr(record, "pool", None),
            "pid": record.process,
            "process": record.processName,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _OURS and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


TEXT_FORMAT = ("%(asctime)s %(levelname)s %(processName)s %(name)s "
               "[req=%(request_id)s task=%(task_id)s] %(message)s")


def setup_logging(loglevel: int | str | None = None, fmt: str | None = None, stream: Any = None,
                  **_: Any) -> logging.Handler:
    """Install hgq's handler on the root logger (idempotent). `fmt`: "json" (default: HGQ_LOG_FORMAT)
    or "text". Accepts Celery's `setup_logging` signal arguments."""
    if fmt is None:
        from shared.settings import get_settings

        fmt = get_settings().log_format
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.__stderr__)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    if loglevel is not None:
        root.setLevel(logging.getLevelName(loglevel.upper()) if isinstance(loglevel, str) else loglevel)
    elif root.level == logging.NOTSET or root.level == logging.WARNING:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return handler
