"""What the command line prints about a run: progress events as they arrive and the final view."""

from __future__ import annotations

import time

import click

from shared.run_models import RunEvent, RunPublic


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
        stage = {"plan": "planning", "respond": "writing the answer", "select": "choosing models"}.get(
            str(ev.data.get("stage")), str(ev.data.get("stage")))
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
