"""`hgq eval plans`: TaskBench-style metrics, the shipped ground truth, and the command on the scripted LLM."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from planner_service.cli_eval import register
from planner_service.eval_cases import (
    DEFAULT_AVAILABLE,
    DEFAULT_FILE,
    fake_uploads,
    gold_plan,
    hgq_task,
    load_cases,
    parse_case,
)
from planner_service.eval_runner import evaluate, evaluate_case
from planner_service.eval_scoring import f1, match, plan_links, plan_nodes
from shared.catalog import TASK_TYPES
from shared.errors import LLMError, PlanError
from shared.outputs import ArtifactRef
from shared.plan import PlanTask, ValidatedPlan, validate_plan

ASR, OCR, QA = "automatic-speech-recognition", "image-to-text", "question-answering"

DAG = {  # OCR and ASR both feed question answering
    "id": "x1", "type": "dag",
    "user_request": "Answer the question asked in q.wav from the text of doc.png.",
    "task_nodes": [{"task": "Image-to-Text", "arguments": ["doc.png"]},
                   {"task": "Automatic Speech Recognition", "arguments": ["q.wav"]},
                   {"task": "Question Answering", "arguments": ["<node-0>", "<node-1>"]}],
    "task_links": [{"source": "Image-to-Text", "target": "Question Answering"},
                   {"source": "Automatic Speech Recognition", "target": "Question Answering"}],
}
CHAIN = {
    "id": "x2", "type": "chain", "user_request": "Transcribe memo.wav and summarise it.",
    "task_nodes": [{"task": "Automatic Speech Recognition", "arguments": ["memo.wav"]},
                   {"task": "Summarization", "arguments": ["<node-0>"]}],
    "task_links": [{"source": "Automatic Speech Recognition", "target": "Summarization"}],
}


def _planner(tasks: list[dict[str, object]] | Exception):
    def plan_fn(text: str, uploads: Mapping[str, ArtifactRef], available: set[str]) -> ValidatedPlan:
        if isinstance(tasks, Exception):
            raise tasks
        return validate_plan([PlanTask.model_validate(t) for t in tasks], uploads, available)
    return plan_fn


# --- mapping and parsing --------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("Automatic Speech Recognition", ASR), ("Image-to-Text", OCR), ("Text-to-Speech", "text-to-speech"),
    ("Summarization", "summarization"), ("Translation", "translation"),
    ("Text Classification", "text-classification"), ("Object Detection", "object-detection"),
    ("Question Answering", QA), ("Image Editing", "image-to-image"), ("audio classification", "audio-classification"),
    ("language-detection", "language-detection"), ("text2text-generation", "text2text-generation"),
    ("Text-to-Video", "text-to-video"),
])
def test_taskbench_names_map_to_hgq_task_types(name: str, expected: str) -> None:
    assert hgq_task(name) == expected


def test_every_taskbench_tool_maps_to_a_known_task_type_or_has_no_equivalent() -> None:
    tools = ["Token Classification", "Translation", "Summarization", "Question Answering", "Conversational",
             "Text Generation", "Sentence Similarity", "Tabular Classification", "Object Detection",
             "Image Classification", "Image-to-Image", "Image-to-Text", "Text-to-Image", "Text-to-Video",
             "Visual Question Answering", "Document Question Answering", "Image Segmentation", "Depth Estimation",
             "Text-to-Speech", "Automatic Speech Recognition", "Audio-to-Audio", "Audio Classification",
             "Image Editing"]
    unmapped = [t for t in tools if hgq_task(t) not in TASK_TYPES]
    assert unmapped == []  # text-to-video is a task type now (a diffusers model serves it)


def test_parse_case_links_from_task_links_and_node_refs_count_once() -> None:
    case = parse_case(DAG)
    assert case.node_names == [OCR, ASR, QA]
    assert sorted(case.links) == [(ASR, QA), (OCR, QA)]
    assert set(case.files) == {"q.wav", "doc.png"}
    only_refs = parse_case({**DAG, "task_links": []})
    assert sorted(only_refs.links) == sorted(case.links)
    by_index = parse_case({**DAG, "task_links": [{"source": 0, "target": 2}, {"source": "<node-1>", "target": "2"}]})
    assert sorted(by_index.links) == sorted(case.links)


def test_fake_uploads_take_their_kind_from_the_extension() -> None:
    ups = fake_uploads(["a.png", "b.JPG", "c.wav", "d.mp3", "notes.txt"])
    assert {n: r.kind for n, r in ups.items()} == {"a.png": "image", "b.JPG": "image", "c.wav": "audio",
                                                   "d.mp3": "audio"}
    assert ups["a.png"].mime == "image/png" and ups["c.wav"].name == "c.wav"


# --- metrics ----------------------------------------------------------------------------------------
def test_exact_match_scores_one() -> None:
    case = parse_case(DAG)
    plan = validate_plan(gold_plan(case), fake_uploads(case.files), set(DEFAULT_AVAILABLE))
    assert f1(case.node_names, plan_nodes(plan)) == 1.0
    assert f1(case.links, plan_links(plan)) == 1.0
    r = evaluate_case(lambda t, u, a: plan, case, set(DEFAULT_AVAILABLE))
    assert r.valid and r.node.f1 == 1.0 and r.link.f1 == 1.0 and r.error is None


def test_multiset_matching() -> None:
    c = match(["asr", "asr", "summarization"], ["asr", "summarization", "summarization"])
    assert (c.tp, c.fp, c.fn) == (2, 1, 1)
    assert c.f1 == pytest.approx(2 / 3)
    assert f1([], []) == 1.0 and f1(["a"], []) == 0.0 and f1([], ["a"]) == 0.0


def test_a_missing_link_lowers_link_f1_only() -> None:
    case = parse_case(DAG)
    # QA takes the OCR text, but the question is given literally: the ASR -> QA link is missing
    plan_fn = _planner([
        {"id": 0, "task": OCR, "dep": [-1], "args": {"image": "doc.png"}},
        {"id": 1, "task": ASR, "dep": [-1], "args": {"audio": "q.wav"}},
        {"id": 2, "task": QA, "dep": [0], "args": {"text": "<GENERATED>-0", "question": "what is asked?"}},
    ])
    r = evaluate_case(plan_fn, case, set(DEFAULT_AVAILABLE))
    assert r.valid and r.node.f1 == 1.0
    assert (r.link.tp, r.link.fp, r.link.fn) == (1, 0, 1)
    assert r.link.f1 == pytest.approx(2 / 3)


def test_dep_without_reference_counts_as_a_link() -> None:
    case = parse_case(CHAIN)
    plan_fn = _planner([{"id": 0, "task": ASR, "dep": [-1], "args": {"audio": "memo.wav"}},
                        {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "the memo"}}])
    assert evaluate_case(plan_fn, case, set(DEFAULT_AVAILABLE)).link.f1 == 1.0


def test_an_invalid_plan_counts_as_invalid_and_empty() -> None:
    case = parse_case(CHAIN)
    r = evaluate_case(_planner(PlanError(["task 0: unknown task type 'ocr'"])), case, set(DEFAULT_AVAILABLE))
    assert not r.valid and r.pred_nodes == [] and r.node.f1 == 0.0 and r.link.f1 == 0.0
    assert "unknown task type" in (r.error or "")
    down = evaluate_case(_planner(LLMError("endpoint down")), case, set(DEFAULT_AVAILABLE))
    assert not down.valid and down.error and down.error.startswith("LLM:")


def test_totals_are_micro_averaged_with_the_valid_rate() -> None:
    cases = [parse_case(CHAIN), parse_case(DAG)]
    replies = iter([
        [{"id": 0, "task": ASR, "dep": [-1], "args": {"audio": "memo.wav"}},
         {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}}],
        PlanError(["bad"]),
    ])
    results, s = evaluate(lambda t, u, a: _planner(next(replies))(t, u, a), cases)
    assert [r.valid for r in results] == [True, False]
    assert s.n == 2 and s.valid_rate == 0.5
    assert (s.node.tp, s.node.fp, s.node.fn) == (2, 0, 3)
    assert s.node.f1 == pytest.approx(4 / 7)
    assert (s.link.tp, s.link.fn) == (1, 2) and s.link.f1 == pytest.approx(0.5)
    assert s.by_type["chain"]["node_f1"] == 1.0 and s.by_type["dag"]["valid_rate"] == 0.0


# --- the shipped ground truth -------------------------------------------------------------------------
def test_shipped_ground_truth_is_varied_and_valid() -> None:
    cases = load_cases(DEFAULT_FILE)
    assert len(cases) >= 30
    assert {c.type for c in cases} == {"single", "chain", "dag"}
    assert min(sum(c.type == t for c in cases) for t in ("single", "chain", "dag")) >= 8
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        assert set(case.node_names) <= DEFAULT_AVAILABLE, case.id
        plan = validate_plan(gold_plan(case), fake_uploads(case.files), set(DEFAULT_AVAILABLE))
        assert sorted(plan_links(plan)) == sorted(case.links), case.id
    targets = [[t for _s, t in c.links] for c in cases]
    sources = [[s for s, _t in c.links] for c in cases]
    assert any(len(c.nodes) == 3 and len(set(t)) == 1 and len(t) == 2 for c, t in zip(cases, targets, strict=False))  # two inputs
    assert any(len(s) >= 2 and len(set(s)) == 1 and len(set(c.links)) >= 2 for c, s in zip(cases, sources, strict=False))  # fan-out


# --- the command, on the scripted LLM -------------------------------------------------------------------
@pytest.fixture()
def two_requests(tmp_path: Path) -> Path:
    path = tmp_path / "two.jsonl"
    path.write_text(json.dumps(CHAIN) + "\n" + json.dumps(DAG) + "\n")
    return path


def _cli() -> click.Group:
    @click.group()
    def main() -> None:
        pass

    register(main)
    return main


def test_eval_plans_command_on_the_scripted_llm(hgq_env, fake_llm, two_requests: Path) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", {"tasks": [
        {"id": 0, "task": ASR, "dep": [-1], "args": {"audio": "memo.wav"}},
        {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}}]})
    bad = {"tasks": [{"id": 0, "task": "ocr", "dep": [-1], "args": {"image": "doc.png"}}]}
    fake_llm.script("plan", bad, bad)  # invalid, then invalid again after the repair round
    result = CliRunner().invoke(_cli(), ["eval", "plans", str(two_requests), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    s = out["summary"]
    assert s["n"] == 2 and s["valid"] == 1 and s["valid_rate"] == 0.5
    assert s["first_try_valid"] == 1 and s["empty_plans"] == 0
    assert s["node_f1"] == pytest.approx(4 / 7) and s["link_f1"] == pytest.approx(0.5)
    assert s["mean_latency_s"] > 0
    first, second = out["results"]
    assert first["valid"] and first["node_f1"] == 1.0 and first["llm_calls"] == 1
    assert not second["valid"] and second["llm_calls"] == 2 and "unknown task type 'ocr'" in second["error"]
    offered = fake_llm.calls("plan")[0]["messages"][0]["content"]
    assert "automatic-speech-recognition(" in offered and "text-to-image(" not in offered  # no local model
    assert "[files: memo.wav (audio)]" in fake_llm.calls("plan")[0]["messages"][-1]["content"]


def test_eval_plans_prints_a_table_and_totals(hgq_env, fake_llm, two_requests: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    saved = tmp_path / "results.jsonl"
    result = CliRunner().invoke(_cli(), ["eval", "plans", str(two_requests), "--limit", "1", "--save", str(saved)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "type", "valid", "nodeF1"]
    assert lines[1].split()[:5] == ["x2", "chain", "yes", "0.00", "0.00"]  # the default reply: an empty plan
    assert "requests          1" in result.stdout and "valid-plan rate   1.000" in result.stdout
    assert "node F1 (micro)   0.000" in result.stdout and "1 empty where tasks were expected" in result.stdout
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert rows[0]["id"] == "x2" and rows[0]["gold_nodes"] == [ASR, "summarization"]
    assert rows[-1]["summary"]["n"] == 1


def test_eval_plans_skips_requests_the_planner_is_shown_as_demonstrations(hgq_env, fake_llm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from planner_service.plan_demos import taskbench_demos

    demo_request = taskbench_demos()[0][0].split(" [files:")[0]
    path = tmp_path / "with_demo.jsonl"
    path.write_text(json.dumps(CHAIN) + "\n" + json.dumps({**CHAIN, "id": "demo", "user_request": demo_request}) + "\n")
    result = CliRunner().invoke(_cli(), ["eval", "plans", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["n"] == 1 and [r for r in summary["skipped"] if "demonstration" in r]
    assert all(call["messages"][-1]["content"].split(" [files:")[0] != demo_request for call in fake_llm.calls("plan"))


def test_eval_plans_rejects_unknown_task_types(hgq_env, two_requests: Path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(_cli(), ["eval", "plans", str(two_requests), "--available", "asr"])
    assert result.exit_code == 2 and "unknown task types: asr" in result.output


def test_a_record_that_cannot_be_scored_is_skipped_and_counted(tmp_path: Path) -> None:
    from planner_service.eval_cases import read_cases

    path = tmp_path / "gt.jsonl"
    bad_ref = {**CHAIN, "id": "self", "task_nodes": [{"task": "Summarization", "arguments": ["<node-0>"]}]}
    past_end = {**CHAIN, "id": "far", "task_nodes": [{"task": "Summarization", "arguments": ["<node-5>"]}]}
    path.write_text("\n".join([json.dumps(CHAIN), json.dumps(bad_ref), "{not json", json.dumps(past_end),
                               json.dumps({**DAG, "id": "ok2"})]) + "\n")
    read = read_cases(path)
    assert [c.id for c in read.cases] == [CHAIN["id"], "ok2"]
    assert len(read.skipped) == 3 and read.skipped[0].startswith("line 2:") and "missing node" in read.skipped[0]
    assert load_cases(path) == read.cases


def test_outcomes_are_named_and_an_invalid_plan_scores_zero_in_the_macro_average() -> None:
    from planner_service.eval_runner import totals_text, worst_text
    from planner_service.eval_scoring import failure_kind, summarize

    single = parse_case({"id": "one", "type": "single", "user_request": "Read doc.png",
                         "task_nodes": [{"task": "Image-to-Text", "arguments": ["doc.png"]}], "task_links": []})
    invalid = evaluate_case(_planner(PlanError(["task 0 (image-to-text): arg 'image' references its own output"])),
                            single, set(DEFAULT_AVAILABLE))
    right = evaluate_case(_planner([{"id": 0, "task": OCR, "dep": [-1], "args": {"image": "doc.png"}}]), single,
                          set(DEFAULT_AVAILABLE))
    extra = evaluate_case(_planner([{"id": 0, "task": OCR, "dep": [-1], "args": {"image": "doc.png"}},
                                    {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}}]),
                          single, set(DEFAULT_AVAILABLE))
    assert [failure_kind(r) for r in (invalid, right, extra)] == ["invalid: self-reference", "right", "tasks extra"]
    assert invalid.link.f1 == 1.0  # nothing to find, nothing found: the micro sum is unaffected...
    s = summarize([invalid, right])
    assert s.link_f1_macro == 0.5 and s.node_f1_macro == 0.5  # ...but the macro average no longer rewards it
    assert s.by_failure == {"invalid: self-reference": 1, "right": 1}
    assert "by outcome: invalid: self-reference 1, right 1" in totals_text(s)
    report = worst_text([right, extra, invalid])
    assert report.index("- one [invalid") < report.index("- one [tasks extra]") and "+summarization" in report


def test_loose_and_unmapped_tools_are_listed() -> None:
    from planner_service.eval_cases import tool_mapping

    unmapped, loose = tool_mapping(["Tabular Classification", "Text-to-Video", "Summarization", "Audio Transcription"])
    assert unmapped == ["Audio Transcription"] and loose == ["Tabular Classification"]
