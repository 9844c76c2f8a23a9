"""The end-to-end evaluation's cases and checks: requests with real files run through the whole
stack, judged on what a user would check (`hgq eval e2e`, planner_service/cli_eval_e2e.py runs them).

A case (one line of planner_service/data/eval_e2e.jsonl) names the files it needs by how to make
them offline (speech from a sentence, text rendered in an image, a picture of shapes, silence or
noise) and one or two turns (the second sees the first, in one conversation). Each turn's checks
say what must be in the plan, in the task outputs, in the answer and among the files made. Every
answer is also checked for grounding: a number it states must come from the request, a result or
a file name, never from the LLM alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.run_models import RunPublic

DEFAULT_E2E_FILE = Path(__file__).resolve().parent / "data" / "eval_e2e.jsonl"
REFUSAL = re.compile(r"\b(?:can(?:no|')t|cannot|unable|not (?:available|served|supported|possible)|no (?:running )?"
                     r"(?:worker|model)|isn't available|aren't available|not able)\b", re.I)
LIST_MARKER = re.compile(r"(?m)(?:^|(?<=[:;]\s))\s*\d{1,2}[.)]\s")
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?![\w])")


class FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[\w.-]+\.(?:wav|png|jpg|jpeg)$")
    speech: str | None = None
    text_image: list[str] | None = None
    shapes: bool | None = None
    silence: float | None = Field(None, gt=0, le=30)
    noise: float | None = Field(None, gt=0, le=30)

    @model_validator(mode="after")
    def _one_way(self) -> FileSpec:
        ways = [w for w in ("speech", "text_image", "shapes", "silence", "noise") if getattr(self, w)]
        if len(ways) != 1:
            raise ValueError(f"{self.name}: give exactly one of speech, text_image, shapes, silence, noise")
        return self


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(default_factory=list)
    no_tasks: list[str] = Field(default_factory=list)
    outputs_contain: list[str] = Field(default_factory=list)
    answer_contains: list[str | list[str]] = Field(default_factory=list)
    answer_lacks: list[str] = Field(default_factory=list)
    artifacts: list[Literal["image", "audio", "video"]] = Field(default_factory=list)
    answer_language: str | None = None
    refused: str | None = None


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    files: list[str] = Field(default_factory=list)
    expect: Expect = Field(default_factory=Expect)


class E2ECase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: Literal["single", "chain", "dag", "multi-turn", "refuse", "chat"]
    files: list[FileSpec] = Field(default_factory=list)
    turns: list[Turn] = Field(min_length=1, max_length=4)

    @model_validator(mode="after")
    def _files_defined(self) -> E2ECase:
        defined = {f.name for f in self.files}
        missing = sorted({name for t in self.turns for name in t.files} - defined)
        if missing:
            raise ValueError(f"turn files not defined in 'files': {', '.join(missing)}")
        return self


def read_e2e_cases(path: Path, limit: int | None = None) -> list[E2ECase]:
    """The cases of a JSONL file; ValueError naming the line of the first bad one."""
    cases: list[E2ECase] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cases.append(E2ECase.model_validate(json.loads(line)))
        except ValidationError as exc:
            raise ValueError(f"{path}:{n}: " + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'case'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors())) from exc
        except ValueError as exc:  # not JSON
            raise ValueError(f"{path}:{n}: {exc}") from exc
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate case ids")
    return cases[:limit] if limit else cases


def _has(text: str, word: str) -> bool:
    return word.lower() in text.lower()


def facts_text(view: RunPublic) -> str:
    """Everything the results say, as one text: outputs, labels, boxes, data, file names."""
    parts = [view.request, view.error or ""]
    for task in view.tasks.values():
        parts.append(task.error or "")  # a failed task's reason is what the answer reports
        out = task.output
        if out is None:
            continue
        parts.append(out.text or "")
        parts += [f"{lab.label} {lab.score}" for lab in out.labels]
        parts += [f"{b.label} {b.x} {b.y} {b.width} {b.height}" for b in out.boxes]
        parts.append(f"{len(out.boxes)} boxes, {len(out.labels)} labels")  # counts are facts too
        parts.append(json.dumps(out.data))
        parts += [a.name or "" for a in out.artifacts]
    parts += [f"task{a.task}-{a.id[:12]}" for a in view.artifacts]
    return "\n".join(parts)


def ungrounded_numbers(answer: str, facts: str, context: Iterable[str] = ()) -> list[str]:
    """Numbers the answer states that neither the results nor the conversation contain."""
    known = {n.replace(",", ".") for n in NUMBER.findall(facts + "\n" + "\n".join(context))}
    for n in list(known):  # a score of 0.74 may be said as 74%
        if "." in n and 0 <= float(n) <= 1:
            known |= {str(round(float(n) * 100)), f"{float(n) * 100:.1f}"}
    out = []
    answer = LIST_MARKER.sub(" ", answer)  # "1. I read the file" numbers a list, it states nothing
    for n in NUMBER.findall(answer):
        value = n.replace(",", ".")
        if value not in known and value.rstrip("0").rstrip(".") not in known and value not in {"1", "0"}:
            out.append(n)
    return out


def detect_language(text: str) -> str | None:
    try:
        from langdetect import DetectorFactory, detect

        DetectorFactory.seed = 0
        return str(detect(text))
    except Exception:  # noqa: BLE001 - not installed, or no features in the text
        return None


def check_turn(expect: Expect, view: RunPublic, context: Iterable[str] = (), grounded: bool = True) -> list[str]:
    """What is wrong with a finished turn (empty: fully right). `grounded`: check the answer's numbers
    against the results (not for chat: a knowledge question has no results to check against)."""
    problems: list[str] = []
    answer = view.response or ""
    planned = [str(t.get("task")) for t in view.plan]
    if expect.refused:
        if expect.refused in planned:
            problems.append(f"planned {expect.refused}, which nothing here serves")
        if not REFUSAL.search(answer + " " + (view.error or "")):
            problems.append(f"the answer does not say it cannot {expect.refused}")
    elif view.status != "succeeded":
        problems.append(f"run {view.status}: {view.error or 'no reason'}")
    problems += [f"plan lacks {t}" for t in expect.tasks if t not in planned]
    problems += [f"plan has {t}" for t in expect.no_tasks if t in planned]
    outputs = "\n".join(t.output.text or "" for t in view.tasks.values() if t.output is not None)
    problems += [f"no task output contains '{w}'" for w in expect.outputs_contain if not _has(outputs, w)]
    for item in expect.answer_contains:
        options = [item] if isinstance(item, str) else item
        if not any(_has(answer, w) for w in options):
            problems.append(f"the answer lacks {' / '.join(repr(w) for w in options)}")
    problems += [f"the answer says '{w}'" for w in expect.answer_lacks if _has(answer, w)]
    kinds = {a.kind for a in view.artifacts}
    problems += [f"no {k} file made" for k in expect.artifacts if k not in kinds]
    if expect.answer_language and answer:
        got = detect_language(answer)
        if got != expect.answer_language:
            problems.append(f"the answer is in {got}, not {expect.answer_language}")
    stray = ungrounded_numbers(answer, facts_text(view), context) if view.tasks and grounded else []
    if stray:
        problems.append(f"ungrounded: the answer states {', '.join(stray)}, which no result contains")
    return problems


PROBLEM_KINDS = (("plan lacks", "a needed task missing"), ("plan has", "a task nobody asked for"),
                 ("planned", "a substitute for what nothing serves"), ("run ", "the run failed"),
                 ("no task output", "a task output without the expected words"),
                 ("the answer lacks", "the answer misses a fact"), ("the answer says", "the answer says a wrong thing"),
                 ("the answer is in", "the answer in the wrong language"),
                 ("the answer does not say", "no honest refusal"), ("ungrounded", "an ungrounded number"),
                 ("no ", "a file not made"))


class TurnResult(BaseModel):
    case: str
    kind: str
    turn: int
    request_id: str
    status: str
    problems: list[str]
    seconds: float
    llm_calls: int

    @property
    def right(self) -> bool:
        return not self.problems


def summary(results: list[TurnResult]) -> dict[str, object]:
    """Fully right per kind (a case is right when all its turns are), ungrounded answers, time."""
    cases: dict[str, list[TurnResult]] = {}
    for r in results:
        cases.setdefault(r.case, []).append(r)
    by_kind: dict[str, list[int]] = {}
    for turns in cases.values():
        right = all(t.right for t in turns)
        by_kind.setdefault(turns[0].kind, [0, 0])[0] += int(right)
        by_kind[turns[0].kind][1] += 1
    right_cases = sum(v[0] for v in by_kind.values())
    seconds = sorted(r.seconds for r in results)
    kinds: dict[str, int] = {}
    for r in results:
        for p in r.problems:
            key = next((name for start, name in PROBLEM_KINDS if p.startswith(start)), "other")
            kinds[key] = kinds.get(key, 0) + 1
    return {"cases": len(cases), "right": right_cases,
            "right_share": round(right_cases / len(cases), 3) if cases else 0.0,
            "by_kind": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_kind.items())},
            "ungrounded_answers": sum(any(p.startswith("ungrounded") for p in r.problems) for r in results),
            "problems_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
            "median_turn_s": seconds[len(seconds) // 2] if seconds else 0.0,
            "llm_calls_per_turn": round(sum(r.llm_calls for r in results) / len(results), 2) if results else 0.0}
