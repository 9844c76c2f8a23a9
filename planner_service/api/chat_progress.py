"""A run's events as the progress lines a chat UI shows while it waits (OpenAI `reasoning_content`).

Reasoning-aware chat UIs (Open WebUI, LibreChat, ...) show `delta.reasoning_content` as a
collapsible "thinking" block; hgq puts there what it is doing: planning (and how many requests
are ahead for the LLM), the plan, each task's start with its model and its end with its time.
"""

from __future__ import annotations

from typing import Any

from shared.run_models import STAGE_WORDS

_ENDS = {"succeeded": "done", "failed": "failed", "skipped": "skipped (an input failed)", "cancelled": "cancelled"}


class ChatProgress:
    """Turns run events into progress lines; remembers the plan and start times for names and durations."""

    def __init__(self) -> None:
        self.tasks: dict[int, str] = {}
        self.started: dict[int, float] = {}
        self._last_wait: tuple[Any, Any] | None = None

    def line(self, ev: dict[str, Any]) -> str | None:
        kind = ev.get("type")
        if kind == "planning":
            return "Planning the request...\n"
        if kind == "waiting":
            key = (ev.get("stage"), ev.get("ahead"))
            if key == self._last_wait:
                return None
            self._last_wait = key
            ahead = ev.get("ahead")
            what = STAGE_WORDS.get(str(ev.get("stage")), str(ev.get("stage")))
            return f"Waiting for the LLM ({what}): {ahead} request{'s' if ahead != 1 else ''} ahead\n"
        if kind == "planned":
            plan = ev.get("plan") or []
            for node in plan:
                if isinstance(node, dict) and isinstance(node.get("id"), int):
                    self.tasks[node["id"]] = str(node.get("task", "task"))
            if not plan:
                return "No task needed: answering directly.\n"
            steps = ", ".join(f"{n.get('id')} {n.get('task')}" for n in plan if isinstance(n, dict))
            return f"Plan: {len(plan)} task{'s' if len(plan) != 1 else ''} ({steps})\n"
        if kind == "task":
            return self._task_line(ev)
        return None

    def _task_line(self, ev: dict[str, Any]) -> str | None:
        node = ev.get("node")
        if not isinstance(node, int):
            return None
        if ev.get("task"):  # a streamed plan's early task is named in its queued event, before the plan
            self.tasks[node] = str(ev["task"])
        task = self.tasks.get(node, "a task")
        status = ev.get("status")
        ts = _float(ev.get("ts"))
        if status == "running":
            if ts is not None:
                self.started[node] = ts
            model = f" with {ev['model']}" if ev.get("model") else ""
            retry = f" (attempt {ev['attempt']})" if isinstance(ev.get("attempt"), int) and ev["attempt"] > 1 else ""
            return f"Task {node} {task} started{model}{retry}\n"
        if status in _ENDS:
            began = self.started.get(node)
            took = f" in {ts - began:.1f} s" if ts is not None and began is not None and ts >= began else ""
            return f"Task {node} {task} {_ENDS[str(status)]}{took}\n"
        return None


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
