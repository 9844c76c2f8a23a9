"""`hgq eval e2e`: the end-to-end set (planner_service/eval_e2e.py) through the real stack -- the
running one, or an embedded one started as `hgq ask` starts it -- with its files made offline here
(speech by the Piper voice, text rendered with DejaVu Sans, shapes, silence, noise). A composition
root: it uses the audio pool's TTS to make the recordings."""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import click

from planner_service.eval_e2e import (
    DEFAULT_E2E_FILE,
    E2ECase,
    FileSpec,
    TurnResult,
    check_turn,
    read_e2e_cases,
    summary,
)
from shared.run_models import FINAL_RUN_STATUSES, RequestCreate, RunPublic
from workers.hf_local.pipeline_client import wav_bytes

FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf",
         "/usr/share/fonts/TTF/DejaVuSans.ttf")


def make_file(spec: FileSpec) -> bytes:
    """The file's bytes, made offline from its spec."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    if spec.speech:
        from workers.audio.experts import PiperTTS
        from workers.expert import get_expert

        return get_expert(PiperTTS.model_id).run({"text": spec.speech}, {}).media[0].data
    if spec.silence:
        return wav_bytes(np.zeros(int(16_000 * spec.silence)), 16_000)
    if spec.noise:
        return wav_bytes(np.random.default_rng(0).normal(0, 0.3, int(16_000 * spec.noise)), 16_000)
    buf = io.BytesIO()
    if spec.text_image:
        path = next((p for p in FONTS if Path(p).is_file()), None)
        font = ImageFont.truetype(path, 40) if path else ImageFont.load_default()
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        boxes = [probe.textbbox((0, 0), line, font=font) for line in spec.text_image]
        line_h = int(max(b[3] for b in boxes)) + 20
        img = Image.new("RGB", (int(max(b[2] for b in boxes)) + 60, line_h * len(spec.text_image) + 60), "white")
        draw = ImageDraw.Draw(img)
        for i, line in enumerate(spec.text_image):
            draw.text((30, 30 + i * line_h), line, font=font, fill="black")
        img.save(buf, format="PNG")
        return buf.getvalue()
    img = Image.new("RGB", (320, 240), (200, 220, 255))
    draw = ImageDraw.Draw(img)
    draw.ellipse((40, 40, 160, 160), fill=(220, 60, 40))
    draw.rectangle((180, 80, 290, 200), fill=(40, 140, 60))
    draw.polygon([(60, 230), (150, 180), (250, 230)], fill=(90, 90, 200))
    img.save(buf, format="JPEG" if spec.name.endswith((".jpg", ".jpeg")) else "PNG")
    return buf.getvalue()


def _wait_final(client: object, run_id: str, timeout_s: float) -> RunPublic:
    from planner_service.client import HgqClient

    assert isinstance(client, HgqClient)
    deadline = time.monotonic() + timeout_s
    while True:
        view = client.view(run_id)
        if view.status in FINAL_RUN_STATUSES:
            return view
        if time.monotonic() > deadline:
            client.cancel(run_id)
            return view.model_copy(update={"status": "failed", "error": f"timed out after {timeout_s:.0f}s"})
        time.sleep(0.3)


def run_case(client: object, case: E2ECase, folder: Path, timeout_s: float) -> list[TurnResult]:
    from planner_service.client import HgqClient

    assert isinstance(client, HgqClient)
    conversation = f"e2e-{case.id[:30]}-{uuid.uuid4().hex[:6]}" if len(case.turns) > 1 else None
    context: list[str] = []
    out = []
    for n, turn in enumerate(case.turns):
        started = time.monotonic()
        uploads = client.uploads_for([folder / case.id / name for name in turn.files])
        run_id = client.submit(RequestCreate(text=turn.text, uploads=uploads, conversation_id=conversation))
        view = _wait_final(client, run_id, timeout_s)
        problems = check_turn(turn.expect, view, context, grounded=case.kind != "chat")
        out.append(TurnResult(case=case.id, kind=case.kind, turn=n, request_id=run_id, status=view.status,
                              problems=problems, seconds=round(time.monotonic() - started, 2),
                              llm_calls=sum(u.calls for u in view.usage.values())))
        context += [turn.text, view.response or ""] + [t.output.text or "" for t in view.tasks.values() if t.output]
    return out


def rescore(client: object, cases: list[E2ECase], saved: Path) -> list[TurnResult]:
    """The saved turns' runs (read back from Redis) checked again with the current checks."""
    from planner_service.client import HgqClient

    assert isinstance(client, HgqClient)
    by_id = {c.id: c for c in cases}
    rows = [TurnResult.model_validate(json.loads(line)) for line in saved.read_text().splitlines()
            if line.strip() and '"case"' in line]
    out: list[TurnResult] = []
    context: dict[str, list[str]] = {}
    for row in rows:
        case = by_id.get(row.case)
        if case is None or row.turn >= len(case.turns):
            continue
        view = client.view(row.request_id)
        seen = context.setdefault(row.case, [])
        out.append(row.model_copy(update={"problems": check_turn(case.turns[row.turn].expect, view, seen,
                                                                 grounded=case.kind != "chat")}))
        seen += [case.turns[row.turn].text, view.response or ""] + [
            t.output.text or "" for t in view.tasks.values() if t.output]
    return out


def print_summary(results: list[TurnResult]) -> dict[str, object]:
    totals = summary(results)
    click.echo(f"\nfully right: {totals['right']}/{totals['cases']} ({totals['right_share']:.0%}); by kind "
               f"{totals['by_kind']}; ungrounded answers {totals['ungrounded_answers']}; median turn "
               f"{totals['median_turn_s']:.1f}s; LLM calls per turn {totals['llm_calls_per_turn']}")
    if totals["problems_by_kind"]:
        click.echo(f"problems by kind: {totals['problems_by_kind']}")
    return totals


@click.command("e2e")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--limit", type=int, default=None, help="only the first N cases")
@click.option("--only", default=None, help="only cases whose id contains this")
@click.option("--timeout", "timeout_s", default=300.0, show_default=True, help="seconds per turn")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also append each turn's result to this JSONL file as it completes (then the summary)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (results and summary)")
@click.option("--rescore", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="run nothing: check the runs of a --save file again (read back from Redis) with the current checks")
def e2e_cmd(file: Path | None, limit: int | None, only: str | None, timeout_s: float, save: Path | None,
            as_json: bool, rescore: Path | None) -> None:
    """Run the end-to-end set (default: the bundled one) through the stack and check each answer."""
    from planner_service.client import HgqClient
    from planner_service.publisher import publisher_app
    from planner_service.stack import Stack, stack_running
    from shared.errors import HgqError
    from shared.settings import get_settings

    path = file or DEFAULT_E2E_FILE
    try:
        cases = [c for c in read_e2e_cases(path) if only is None or only in c.id][:limit]
    except (OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    settings = get_settings()
    if rescore is not None:
        for r in (checked := _rescore_all(settings, cases, rescore)):
            if not r.right:
                click.echo(f"BAD {r.case} (turn {r.turn + 1}, {r.kind}): {'; '.join(r.problems)}")
        print_summary(checked)
        return
    stack = Stack(settings, say=lambda m: click.echo(f"[stack] {m}", err=True), log_dir=settings.home / "logs")
    results: list[TurnResult] = []
    try:
        with stack, tempfile.TemporaryDirectory(prefix="hgq-e2e-") as tmp:
            if not stack_running(settings):
                click.echo("no running stack found: starting an embedded one for the evaluation", err=True)
                stack.ensure_redis()
                stack.ensure_llm()
                stack.start_workers(preload_models=False)
            client = HgqClient(stack.settings, publisher_app(stack.settings))
            folder = Path(tmp)
            for case in cases:
                (folder / case.id).mkdir()
                for spec in case.files:
                    (folder / case.id / spec.name).write_bytes(make_file(spec))
            click.echo(f"{len(cases)} case(s) from {path}; model {stack.settings.llm_model}", err=True)
            for i, case in enumerate(cases, start=1):
                for r in run_case(client, case, folder, timeout_s):
                    results.append(r)
                    if save is not None:
                        with save.open("a", encoding="utf-8") as fh:
                            fh.write(r.model_dump_json() + "\n")
                    mark = "ok " if r.right else "BAD"
                    click.echo(f"[{i}/{len(cases)}] {mark} {r.case} (turn {r.turn + 1}, {r.kind}, {r.seconds:.0f}s)"
                               + ("" if r.right else ": " + "; ".join(r.problems)), err=as_json)
    except HgqError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    totals = summary(results)
    if save is not None:
        with save.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"summary": totals}) + "\n")
    if as_json:
        click.echo(json.dumps({"file": str(path), "summary": totals, "results": [r.model_dump() for r in results]},
                              indent=2))
    else:
        print_summary(results)


def _rescore_all(settings: object, cases: list[E2ECase], saved: Path) -> list[TurnResult]:
    from planner_service.client import HgqClient
    from planner_service.publisher import publisher_app
    from shared.settings import Settings

    assert isinstance(settings, Settings)
    return rescore(HgqClient(settings, publisher_app(settings)), cases, saved)
