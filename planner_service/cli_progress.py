"""What the command line prints about a run: progress events as they arrive and the final view."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from shared.run_models import STAGE_WORDS, RunEvent, RunPublic

if TYPE_CHECKING:
    from rich.console import Group, RenderableType


def err(msg: str) -> None:
    click.echo(msg, err=True)


def show_event(ev: RunEvent, names: dict[int, str]) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(float(ev.data.get("ts", time.time()))))
    if ev.type == "planned":
        plan = ev.data.get("plan", [])
        for t in plan:
            names[int(t["id"])] = t["task"]
        err(f"{stamp} planned {len(plan)} task(s)")
        for t in plan:
            err(f"         [{t['id']}] {t['task']} <- {t['dep']} model={t.get('model')}")
    elif ev.type == "task":
        node = int(ev.data["node"])
        if ev.data.get("early"):  # started while the plan was still being written
            names[node] = str(ev.data.get("task", ""))
        status = ev.data["status"]
        extra = ""
        if status == "running":
            extra = f" on {ev.data.get('worker')} (attempt {ev.data.get('attempt')})"
        elif ev.data.get("error"):
            extra = f": {ev.data['error']}"
        err(f"{stamp} [{node}] {names.get(node, '')} {status}{extra}")
    elif ev.type == "waiting":
        stage = STAGE_WORDS.get(str(ev.data.get("stage")), str(ev.data.get("stage")))
        ahead = int(ev.data.get("ahead", 0))
        err(f"{stamp} {stage}, {ahead} request(s) ahead" if ahead else f"{stamp} {stage}, now at the LLM")
    elif ev.type in ("planning", "done"):
        err(f"{stamp} {ev.type} {ev.data.get('status', '')}".rstrip())


def print_view(view: RunPublic, as_json: bool) -> None:
    if as_json:
        click.echo(view.model_dump_json(indent=2))
        return
    took = f", {view.finished_at - view.created_at:.1f} s" if view.created_at and view.finished_at else ""
    calls = sum(u.calls for stage, u in view.usage.items() if stage in ("plan", "select", "respond"))
    click.echo(f"\nrequest {view.request_id}: {view.status} ({len(view.tasks)} task(s){took}, "
               f"{calls} LLM call(s))")
    for task_id, task in view.tasks.items():
        took = f"{task.finished_at - task.started_at:.2f}s" if task.started_at and task.finished_at else "-"
        click.echo(f"  [{task_id}] {task.task:<30} {task.status:<10} {took:>7}  {task.model or ''}")
        for tried in task.model_attempts:
            if tried.outcome != "succeeded":
                click.echo(f"        {tried.model}: {tried.outcome} after {tried.seconds:.2f}s: {tried.error}")
    for art in view.artifacts:
        where = art.path or f"artifact {art.id[:12]} (hgq ask saves files; the API serves them at " \
                            f"/v1/requests/{view.request_id}/artifacts/{art.id})"
        click.echo(f"  file from task {art.task}: {where} ({art.mime}, {art.size} bytes)")
    click.echo("")
    click.echo(view.response or view.error or "(no answer)")


_STYLE = {"succeeded": "green", "failed": "red", "running": "yellow", "cancelled": "red", "skipped": "dim"}


class LiveProgress:
    """`hgq ask` on a terminal: one status line (planning with the requests ahead at the LLM), a task
    table updated in place, and the answer as it is written; all of it replaced by the final view
    when the run ends. `show_event`'s plain lines are what a pipe or a log file gets instead."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.status = "submitted"
        self.tasks: dict[int, dict[str, str]] = {}
        self.started: dict[int, float] = {}
        self.answer = ""
        self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=True)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)  # type: ignore[arg-type]

    def _render(self) -> Group:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts: list[RenderableType] = [Text(f"hgq: {self.status}", style="bold")]
        if self.tasks:
            table = Table(show_edge=False, pad_edge=False, box=None)
            for col in ("id", "task", "status", "model", "time"):
                table.add_column(col, justify="right" if col in ("id", "time") else "left")
            for node, t in sorted(self.tasks.items()):
                status = t.get("status", "")
                table.add_row(str(node), t.get("task", ""), Text(status, style=_STYLE.get(status, "")),
                              t.get("model", ""), t.get("time", ""))
            parts.append(table)
        if self.answer:
            parts.append(Text(self.answer))
        return Group(*parts)

    def event(self, ev: RunEvent) -> None:
        d = ev.data
        if ev.type == "planning":
            self.status = "planning"
        elif ev.type == "waiting":
            stage = STAGE_WORDS.get(str(d.get("stage")), str(d.get("stage")))
            ahead = int(d.get("ahead", 0))
            self.status = f"{stage}, {ahead} request(s) ahead at the LLM" if ahead else f"{stage}, now at the LLM"
        elif ev.type == "planned":
            for t in d.get("plan", []):
                self.tasks.setdefault(int(t["id"]), {}).update(task=str(t["task"]), model=str(t.get("model") or ""))
            self.status = f"running {len(self.tasks)} task(s)" if self.tasks else "answering"
        elif ev.type == "task":
            node = int(d["node"])
            row = self.tasks.setdefault(node, {"task": str(d.get("task", ""))})
            row["status"] = str(d["status"])
            if d.get("model"):
                row["model"] = str(d["model"])
            ts = float(d.get("ts", time.time()))
            if d["status"] == "running":
                self.started[node] = ts
            elif node in self.started:
                row["time"] = f"{ts - self.started[node]:.1f}s"
        elif ev.type == "answer" and d.get("delta"):
            self.status = "writing the answer"
            self.answer += str(d["delta"])
        elif ev.type == "done":
            self.status = str(d.get("status", "done"))
        self.live.update(self._render())
