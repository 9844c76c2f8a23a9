"""The end-to-end evaluation's checks (planner_service/eval_e2e.py) on runs built here, its case file,
and `hgq eval e2e` itself through the real stack with the scripted LLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from planner_service.eval_e2e import DEFAULT_E2E_FILE, Expect, check_turn, read_e2e_cases, summary, ungrounded_numbers
from shared.run_models import RunPublic

ROOT = Path(__file__).resolve().parent.parent


def _view(answer: str, plan: list[str], outputs: list[str], status: str = "succeeded",
          kinds: tuple[str, ...] = ()) -> RunPublic:
    tasks = {str(i): {"id": i, "task": t, "status": "succeeded", "output": {"text": o}}
             for i, (t, o) in enumerate(zip(plan, outputs, strict=True))}
    artifacts = [{"id": "a" * 64, "task": 0, "kind": k, "mime": f"{k}/x", "size": 1, "url": "/x"} for k in kinds]
    return RunPublic.model_validate({"request_id": "r1", "status": status, "request": "req", "response": answer,
                                     "plan": [{"id": i, "task": t} for i, t in enumerate(plan)], "tasks": tasks,
                                     "artifacts": artifacts})


def test_a_right_answer_passes_and_each_kind_of_wrong_is_named() -> None:
    expect = Expect(tasks=["automatic-speech-recognition", "summarization"], outputs_contain=["budget"],
                    answer_contains=[["Thursday", "thu"]], answer_lacks=["Monday"], artifacts=["audio"])
    plan = ["automatic-speech-recognition", "summarization"]
    good = _view("The budget review moves to Thursday.", plan, ["the budget review moves to thursday", "moved"],
                 kinds=("audio",))
    assert check_turn(expect, good) == []
    bad = _view("It moves to Monday, in 3 weeks.", ["automatic-speech-recognition"], ["the meeting moves"])
    assert check_turn(expect, bad) == [
        "plan lacks summarization", "no task output contains 'budget'", "the answer lacks 'Thursday' / 'thu'",
        "the answer says 'Monday'", "no audio file made",
        "ungrounded: the answer states 3, which no result contains"]


def test_refusals_languages_and_grounding() -> None:
    refuse = Expect(refused="text-to-image", no_tasks=["image-to-image"])
    honest = _view("I can't generate an image here: no running worker serves text-to-image.", [], [])
    assert check_turn(refuse, honest) == []
    faked = _view("Here is your fox.", ["image-to-image"], ["gray version of the image"])
    assert check_turn(refuse, faked) == ["the answer does not say it cannot text-to-image", "plan has image-to-image"]
    french = Expect(answer_language="fr")
    assert check_turn(french, _view("La cuisine est fermée pour le nettoyage aujourd'hui.", ["translation"], ["x"])) == []
    assert check_turn(french, _view("The kitchen is closed for cleaning today.", ["translation"], ["x"]))[0] \
        .startswith("the answer is in en")
    # numbers are grounded by results, the request or an earlier turn; small counts are free
    assert ungrounded_numbers("2 faces, 14 boxes, opens at 9", "2 object(s): face (0.91)", ["open 9 to 5"]) == ["14"]
    assert ungrounded_numbers("they are 74% similar (91.0 for faces)", '{"similarity": 0.7412} face (0.91)') == []
    assert check_turn(Expect(), _view("The capital is Paris, since 508.", [], [])) == []  # chat: no facts to check


def test_the_bundled_set_is_valid_varied_and_sized() -> None:
    cases = read_e2e_cases(DEFAULT_E2E_FILE)
    kinds = {c.kind for c in cases}
    assert len(cases) >= 60 and kinds == {"single", "chain", "dag", "multi-turn", "refuse", "chat"}
    assert sum(len(c.turns) for c in cases) >= 70
    assert all(len(c.turns) == 2 for c in cases if c.kind == "multi-turn")
    texts = [t.text for c in cases for t in c.turns]
    assert len(set(texts)) == len(texts)  # no request twice
    from shared.catalog import TASK_TYPES

    named = {t for c in cases for turn in c.turns for t in (*turn.expect.tasks, *turn.expect.no_tasks)}
    assert named <= set(TASK_TYPES), named - set(TASK_TYPES)


def test_a_bad_case_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "cases.jsonl"
    bad.write_text(json.dumps({"id": "x", "kind": "single", "turns": [{"text": "hi", "files": ["nope.png"]}]}) + "\n")
    with pytest.raises(ValueError, match=r"cases.jsonl:1: case: turn files not defined in 'files': nope.png$"):
        read_e2e_cases(bad)
    assert summary([])["cases"] == 0


def test_hgq_eval_e2e_runs_cases_through_the_stack(stack, hgq_env, fake_llm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The command on the real stack with the scripted LLM: an OCR case right, a case whose plan lacks
    the task it needs wrong, and the summary counts both."""
    fake_llm.script("plan", {"tasks": [{"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "notice.png"}}]})
    cases = tmp_path / "cases.jsonl"
    lines: list[dict[str, Any]] = [
        {"id": "ocr", "kind": "single", "files": [{"name": "notice.png", "text_image": ["KITCHEN CLOSED"]}],
         "turns": [{"text": "what does notice.png say", "files": ["notice.png"],
                    "expect": {"tasks": ["image-to-text"], "outputs_contain": ["kitchen"]}}]},
        {"id": "missing", "kind": "chain", "turns": [{"text": "translate hello", "expect": {"tasks": ["translation"]}}]}]
    cases.write_text("\n".join(json.dumps(c) for c in lines) + "\n")
    out = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "-m", "planner_service.cli", "eval", "e2e", str(cases), "--save", str(out)],
                          env={**os.environ, **hgq_env}, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[1/2] ok  ocr" in proc.stdout and "[2/2] BAD missing" in proc.stdout and "plan lacks translation" in proc.stdout
    assert "fully right: 1/2 (50%)" in proc.stdout
    saved = [json.loads(line) for line in out.read_text().splitlines()]
    assert saved[0]["case"] == "ocr" and saved[0]["problems"] == [] and saved[-1]["summary"]["right"] == 1
