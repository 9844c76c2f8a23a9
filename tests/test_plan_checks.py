"""The planner's deterministic help: plan slips fixed without the LLM, repair messages for what a
valid plan misses, and demonstrations retrieved per request from a bank kept apart from every
evaluation set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from planner_service.demo_retrieval import pick_demos
from planner_service.eval_cases import DEFAULT_FILE
from planner_service.plan_checks import normalise
from planner_service.plan_cues import request_problems
from planner_service.plan_demos import DEMOS, bank, taskbench_demos
from planner_service.planning import plan_request
from shared.catalog import TASK_TYPES
from shared.errors import PlanError
from shared.outputs import ArtifactRef
from shared.plan import parse_plan_json, validate_plan

OFFERED = {name for name, spec in TASK_TYPES.items() if not spec.diagnostic}
ROOT = Path(__file__).resolve().parent.parent


def _upload(name: str, kind: str = "image") -> dict[str, ArtifactRef]:
    return {name: ArtifactRef(id=name.encode().hex().ljust(64, "0")[:64], mime=f"{kind}/x", kind=kind,  # type: ignore[arg-type]
                              size=1, name=name)}


def _tasks(raw: list[dict[str, object]]):  # type: ignore[no-untyped-def]
    return parse_plan_json(raw)


def test_deps_follow_the_references_only() -> None:
    fixed = normalise(_tasks([
        {"id": 0, "task": "image-to-text", "dep": [-1, 7], "args": {"image": "a.png"}},
        {"id": 1, "task": "summarization", "dep": [0, 1], "args": {"text": "<GENERATED>-0"}},
        {"id": 2, "task": "text-to-speech", "dep": [1], "args": {"text": "read this literally"}},
    ]), _upload("a.png"))
    assert [t.dep for t in fixed] == [[-1], [0], [-1]]  # missing 7 and self 1 dropped; 2 carries no data from 1
    validate_plan(fixed, _upload("a.png"), OFFERED)


def test_a_self_reference_points_at_the_latest_earlier_producer() -> None:
    fixed = normalise(_tasks([
        {"id": 0, "task": "automatic-speech-recognition", "dep": [-1], "args": {"audio": "m.wav"}},
        {"id": 1, "task": "summarization", "dep": [1], "args": {"text": "<GENERATED>-1"}},
    ]), _upload("m.wav", "audio"))
    assert fixed[1].args == {"text": "<GENERATED>-0"} and fixed[1].dep == [0]


def test_a_self_reference_beside_an_attached_file_nobody_reads_gets_the_reading_step() -> None:
    # "Can you write out what I said in memo.wav?" planned as speech of its own output (a 1.5B slip)
    memo = _upload("memo.wav", "audio")
    fixed = normalise(_tasks([{"id": 0, "task": "text-to-speech", "dep": [-1], "args": {"text": "<GENERATED>-0"}}]),
                      memo, "Can you write out what I said in memo.wav?")
    assert [(t.task, t.args) for t in fixed] == [("automatic-speech-recognition", {"audio": "memo.wav"}),
                                                 ("text-to-speech", {"text": "<GENERATED>-1"})]
    validate_plan(fixed, memo, OFFERED)
    # a picture: the text in it; two unread files: no guess
    sign = _upload("sign.png")
    fixed = normalise(_tasks([{"id": 0, "task": "summarization", "dep": [-1], "args": {"text": "<GENERATED>-3"}}]),
                      sign, "sum up sign.png")
    assert fixed[0].task == "image-to-text" and fixed[1].args == {"text": "<GENERATED>-1"}
    both = {**memo, **sign}
    unsure = normalise(_tasks([{"id": 0, "task": "summarization", "dep": [-1], "args": {"text": "<GENERATED>-0"}}]),
                       both, "sum it up")
    assert [t.task for t in unsure] == ["summarization"]
    assert normalise([], memo, "hello there") == []  # an empty plan (plain chat) stays empty


def test_an_unasked_segmentation_before_reading_a_sign_is_left_out() -> None:
    sign = _upload("garage_sale.png")
    plan = [{"id": 0, "task": "image-segmentation", "dep": [-1], "args": {"image": "garage_sale.png"}},
            {"id": 1, "task": "image-to-text", "dep": [0], "args": {"image": "<GENERATED>-0"}},
            {"id": 2, "task": "text-to-speech", "dep": [1], "args": {"text": "<GENERATED>-1"}}]
    fixed = normalise(_tasks(plan), sign, "cool, can you say it out loud?")
    assert [(t.task, t.args) for t in fixed] == [("image-to-text", {"image": "garage_sale.png"}),
                                                 ("text-to-speech", {"text": "<GENERATED>-1"})]
    asked = normalise(_tasks(plan), sign, "cut out the sign from garage_sale.png, read it and say it out loud")
    assert [t.task for t in asked] == ["image-segmentation", "image-to-text", "text-to-speech"]


def test_a_text_input_pointing_nowhere_in_a_follow_up_takes_what_the_last_turn_read() -> None:
    fixed = normalise(_tasks([{"id": 0, "task": "text-classification", "dep": [-1], "args": {"text": "<GENERATED>-1"}}]),
                      {}, "so overall, is that review positive or negative?", earlier_text="The battery dies before lunch.")
    assert fixed[0].args == {"text": "The battery dies before lunch."}
    validate_plan(fixed, {}, OFFERED)


def test_a_self_reference_with_nothing_earlier_is_left_for_the_repair_round() -> None:
    fixed = normalise(_tasks([{"id": 0, "task": "summarization", "dep": [-1], "args": {"text": "<GENERATED>-0"}}]), {})
    with pytest.raises(PlanError, match="references its own output"):
        validate_plan(fixed, {}, OFFERED)


def test_a_self_reference_without_a_producer_takes_the_attached_file_or_the_quoted_text() -> None:
    uploads = _upload("example.jpg")
    fixed = normalise(_tasks([
        {"id": 0, "task": "image-to-text", "args": {"image": "<GENERATED>-0"}},
        {"id": 1, "task": "object-detection", "args": {"image": "<GENERATED>-0"}},  # OCR makes text, not an image
    ]), uploads)
    assert fixed[0].args == {"image": "example.jpg"} and fixed[1].args == {"image": "example.jpg"}
    quoted = normalise(_tasks([{"id": 0, "task": "translation", "args": {"text": "<GENERATED>-0"}}]), {},
                       "Could you translate 'Hello, how are you?' from English to French?")
    assert quoted[0].args == {"text": "Hello, how are you?"}


def test_a_question_under_the_wrong_name_and_a_missing_image_are_put_in_place() -> None:
    fixed = normalise(_tasks([{"id": 0, "task": "document-question-answering",
                               "args": {"question": "What is the total?"}}]), _upload("bill.png"))
    assert fixed[0].args == {"text": "What is the total?", "image": "bill.png"}
    two = {**_upload("a.png"), **_upload("b.png")}  # which of two images is meant is not guessed
    assert normalise(_tasks([{"id": 0, "task": "image-to-text", "args": {}}]), two)[0].args == {}


def test_a_misnamed_arg_fills_the_one_empty_slot() -> None:
    fixed = normalise(_tasks([{"id": 0, "task": "image-classification", "args": {"img": "cat.jpg"}}]),
                      _upload("cat.jpg"))
    assert fixed[0].args == {"image": "cat.jpg"}
    # two empty slots: which one is meant is a judgement, left to validation and the repair round
    two = normalise(_tasks([{"id": 0, "task": "question-answering", "args": {"context": "x"}}]), {})
    assert two[0].args == {"context": "x"}


def test_request_problems_name_an_unused_file_and_a_task_asked_for_by_name() -> None:
    uploads = {**_upload("a.png"), **_upload("b.png")}
    plan = validate_plan(_tasks([{"id": 0, "task": "image-to-text", "args": {"image": "a.png"}}]), uploads, OFFERED)
    problems = request_problems("Read a.png and b.png and translate both into French.", plan, uploads, OFFERED)
    assert any("b.png is not used" in p for p in problems)
    assert any("no translation task" in p for p in problems)
    assert not any("a.png" in p for p in problems)
    complete = validate_plan(_tasks([
        {"id": 0, "task": "image-to-text", "args": {"image": "a.png"}},
        {"id": 1, "task": "image-to-text", "args": {"image": "b.png"}},
        {"id": 2, "task": "translation", "args": {"text": "<GENERATED>-0", "target": "French"}},
    ]), uploads, OFFERED)
    assert request_problems("Read a.png and b.png and translate the first into French.", complete, uploads,
                            OFFERED) == []


def test_a_cue_for_a_task_type_nobody_serves_is_not_asked_for() -> None:
    plan = validate_plan(_tasks([{"id": 0, "task": "image-to-text", "args": {"image": "a.png"}}]), _upload("a.png"),
                         OFFERED)
    assert request_problems("Read a.png and translate it", plan, _upload("a.png"), OFFERED - {"translation"}) == []


class _ScriptedLLM:
    def __init__(self, *replies: object) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    def begin(self, stage: str) -> None:
        pass

    def chat_json(self, stage: str, messages: list[dict[str, str]], schema: object, on_delta: object = None,
                  max_tokens: object = None) -> object:
        self.calls.append([dict(m) for m in messages])
        return self.replies.pop(0)


def test_a_plan_missing_a_file_gets_one_repair_round_with_the_reason() -> None:
    uploads = {**_upload("a.png"), **_upload("b.png")}
    first = {"tasks": [{"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "a.png"}}]}
    second = {"tasks": [{"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "a.png"}},
                        {"id": 1, "task": "image-to-text", "dep": [-1], "args": {"image": "b.png"}}]}
    llm = _ScriptedLLM(first, second)
    plan = plan_request(llm, "What do a.png and b.png say?", uploads, OFFERED)  # type: ignore[arg-type]
    assert [n.task for n in plan.nodes] == ["image-to-text", "image-to-text"]
    assert "b.png is not used" in llm.calls[1][-1]["content"]


def test_when_only_the_repair_round_fails_the_first_valid_plan_stands() -> None:
    uploads = {**_upload("a.png"), **_upload("b.png")}
    first = {"tasks": [{"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "a.png"}}]}
    llm = _ScriptedLLM(first, {"tasks": [{"id": 0, "task": "no-such-task", "dep": [-1], "args": {}}]})
    plan = plan_request(llm, "What do a.png and b.png say?", uploads, OFFERED)  # type: ignore[arg-type]
    assert [n.task for n in plan.nodes] == ["image-to-text"] and len(llm.calls) == 2


def test_a_repair_that_fixes_nothing_it_was_asked_to_does_not_replace_the_first_plan() -> None:
    """A small LLM sometimes answers the repair message with a worse plan (one that even quotes
    the repair message as its text) that still misses what was asked: the first plan stands."""
    request = "Translate 'Hola a todos' into English and summarise it."
    first = {"tasks": [{"id": 0, "task": "translation", "dep": [-1], "args": {"text": "Hola a todos"}}]}
    worse = {"tasks": [{"id": 0, "task": "text-classification", "dep": [-1],
                        "args": {"text": "That plan misses part of the request"}}]}
    llm = _ScriptedLLM(first, worse)
    plan = plan_request(llm, request, {}, OFFERED)  # type: ignore[arg-type]
    assert "no summarization task" in llm.calls[1][-1]["content"]
    assert [n.task for n in plan.nodes] == ["translation"]


def test_every_demonstration_is_a_valid_plan_and_every_served_type_is_shown() -> None:
    shown: set[str] = set()
    for request, tasks in DEMOS:
        files = re.findall(r"(\S+\.\w+) \((image|audio)\)", request)
        uploads = {name: ArtifactRef(id=str(i).rjust(64, "0"), mime=f"{kind}/x", kind=kind, size=1, name=name)  # type: ignore[arg-type]
                   for i, (name, kind) in enumerate(files)}
        plan = validate_plan(parse_plan_json(tasks), uploads, OFFERED)
        assert request_problems(request, plan, uploads, OFFERED) == [], request  # demos practise what checks ask
        shown |= {n.task for n in plan.nodes}
    served_offline = {"audio-classification", "automatic-speech-recognition", "conversational",
                      "document-question-answering", "image-classification", "image-segmentation", "image-to-image",
                      "image-to-text", "language-detection", "object-detection", "question-answering",
                      "sentence-similarity", "summarization", "text-classification", "text-generation",
                      "text-to-speech", "text2text-generation", "token-classification", "translation"}
    assert served_offline <= shown


def _eval_requests() -> list[str]:
    files = [DEFAULT_FILE, *sorted((ROOT / "planner_service" / "data").glob("eval_*.jsonl"))]
    out = []
    for path in dict.fromkeys(files):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                obj = json.loads(line)
                if "turns" in obj:  # the end-to-end set: every turn's request
                    out += [str(turn["text"]) for turn in obj["turns"]]
                else:
                    out.append(str(obj.get("user_request") or obj.get("request")))
    return out


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def test_no_demonstration_is_in_an_evaluation_set() -> None:
    evals = _eval_requests()
    assert len(evals) >= 40
    for request, _ in DEMOS:
        demo = _trigrams(request.split(" [files:")[0])
        for other in evals:
            shared = demo & _trigrams(other)
            assert len(shared) <= max(2, len(demo) // 3), (request, other)


def test_the_taskbench_part_of_the_bank_is_valid_plans_kept_apart_from_every_evaluation_set() -> None:
    tb = taskbench_demos()
    assert len(tb) >= 100 and bank()[:len(DEMOS)] == tuple(DEMOS)
    shapes = {"chain": 0, "join": 0}
    for request, tasks in tb:
        files = re.findall(r"(\S+\.\w+) \((image|audio)\)", request)
        uploads = {name: ArtifactRef(id=str(i).rjust(64, "0"), mime=f"{kind}/x", kind=kind, size=1, name=name)  # type: ignore[arg-type]
                   for i, (name, kind) in enumerate(files)}
        plan = validate_plan(parse_plan_json(tasks), uploads, OFFERED)
        shapes["chain"] += any(node.deps for node in plan.nodes)
        shapes["join"] += any(len(node.deps) >= 2 for node in plan.nodes)
    assert shapes["chain"] >= 20 and shapes["join"] >= 1
    evals = {r.strip() for r in _eval_requests()}
    assert not evals & {request.split(" [files:")[0].strip() for request, _ in tb}
    rows = [json.loads(line) for line in (ROOT / "planner_service" / "data" / "taskbench_demos.jsonl").read_text(
        encoding="utf-8").splitlines()]
    held_out = [int(r["source"].rsplit(" ", 1)[1]) for r in rows]  # "dev.jsonl line N" (1-based)
    assert all((line - 1) % 3 != 1 for line in held_out)  # fold B, which `hgq eval plans` scores, is not in it


def test_retrieval_shows_the_closest_demonstrations_that_can_run() -> None:
    picked = pick_demos("Please transcribe interview.wav for me and read a summary of it aloud.", OFFERED)
    assert len(picked) == 4
    assert any(t["task"] == "automatic-speech-recognition" for _, tasks in picked[-2:] for t in tasks)
    no_audio = pick_demos("Please transcribe interview.wav", OFFERED - {"automatic-speech-recognition"})
    assert all(t["task"] != "automatic-speech-recognition" for _, tasks in no_audio for t in tasks)
    assert pick_demos("Translate 'good morning' into Italian", OFFERED) == pick_demos(
        "Translate 'good morning' into Italian", OFFERED)


def test_a_task_reading_a_file_nobody_gave_is_dropped_and_its_reader_takes_the_quoted_text() -> None:
    """The small LLM copies demonstration file names ("voice.wav") into requests that have no audio."""
    request = "Translate 'Cet article parle de la France' into English and summarise the translation."
    fixed = normalise(_tasks([
        {"id": 0, "task": "automatic-speech-recognition", "dep": [-1], "args": {"audio": "voice.wav"}},
        {"id": 1, "task": "translation", "dep": [0], "args": {"text": "<GENERATED>-0", "target": "English"}},
        {"id": 2, "task": "summarization", "dep": [1], "args": {"text": "<GENERATED>-1"}},
    ]), {}, request)
    assert [t.task for t in fixed] == ["translation", "summarization"]
    assert fixed[0].args["text"] == "Cet article parle de la France"  # the quoted passage, not a missing task
    plan = validate_plan(fixed, {}, OFFERED)
    assert plan.node(2).deps == [1]


def test_a_file_the_request_names_is_kept_so_the_user_hears_it_is_missing() -> None:
    fixed = normalise(_tasks([{"id": 0, "task": "automatic-speech-recognition", "dep": [-1],
                               "args": {"audio": "talk.wav"}}]), {}, "Transcribe talk.wav please")
    assert [t.task for t in fixed] == ["automatic-speech-recognition"]
    with pytest.raises(PlanError, match="talk.wav"):
        validate_plan(fixed, {}, OFFERED)


def test_document_questions_without_any_image_become_text_question_answering() -> None:
    fixed = normalise(_tasks([{"id": 0, "task": "document-question-answering", "dep": [-1],
                               "args": {"image": "example.txt", "text": "Who wrote it?"}}]), {},
                      "Who is the author of example.txt?")
    assert fixed[0].task == "question-answering"
    assert fixed[0].args == {"question": "Who wrote it?", "text": "example.txt"}
    # with an image attached it stays a document question
    kept = normalise(_tasks([{"id": 0, "task": "document-question-answering", "dep": [-1],
                              "args": {"image": "scan.png", "text": "Total?"}}]), _upload("scan.png"), "scan.png total?")
    assert kept[0].task == "document-question-answering"


def test_the_constrained_schema_offers_only_served_types_with_their_own_arg_names() -> None:
    from planner_service.planning import plan_schema

    schema = plan_schema({"translation", "image-to-text"})
    variants = schema["properties"]["tasks"]["items"]["anyOf"]  # type: ignore[index]
    assert sorted(v["properties"]["task"]["const"] for v in variants) == ["image-to-text", "translation"]
    translation = next(v for v in variants if v["properties"]["task"]["const"] == "translation")
    args = translation["properties"]["args"]
    assert set(args["properties"]) == {"text", "target"} and args["required"] == ["text"]
    assert args["additionalProperties"] is False


def test_speech_or_labels_nobody_asked_for_are_dropped_but_asked_ones_stay() -> None:
    plan = [{"id": 0, "task": "translation", "dep": [-1], "args": {"text": "Hello, how are you?", "target": "French"}},
            {"id": 1, "task": "text-to-speech", "dep": [0], "args": {"text": "<GENERATED>-0"}},
            {"id": 2, "task": "text-classification", "dep": [0], "args": {"text": "<GENERATED>-0"}}]
    fixed = normalise(_tasks(plan), {}, "Put 'Hello, how are you?' into French for my friend.")
    assert [t.task for t in fixed] == ["translation"]
    fixed = normalise(_tasks(plan), {}, "Put 'Hello, how are you?' into French, read it aloud and tell me its tone.")
    assert [t.task for t in fixed] == ["translation", "text-to-speech", "text-classification"]
    # a lone task is kept even without a cue: it is the planner's reading of the whole request
    lone = normalise(_tasks(plan[1:2] and [dict(plan[1], id=0, dep=[-1], args={"text": "Good night"})]), {},
                     "Good night, everyone")
    assert [t.task for t in lone] == ["text-to-speech"]


def test_a_task_repeated_until_the_budget_ran_out_is_kept_once() -> None:
    same = {"task": "question-answering", "dep": [-1], "args": {"text": "Ada founded it.", "question": "Who?"}}
    raw = [{"id": i, **same} for i in range(5)]
    raw.append({"id": 5, "task": "text-to-speech", "dep": [3], "args": {"text": "<GENERATED>-3"}})
    fixed = normalise(_tasks(raw), {}, "Who founded it? 'Ada founded it.' Say the answer aloud.")
    assert [(t.id, t.task) for t in fixed] == [(0, "question-answering"), (5, "text-to-speech")]
    assert fixed[1].args["text"] == "<GENERATED>-0" and fixed[1].dep == [0]


def test_document_questions_on_a_text_result_become_text_questions_when_no_image_exists() -> None:
    fixed = normalise(_tasks([
        {"id": 0, "task": "summarization", "dep": [-1], "args": {"text": "A long report about rivers."}},
        {"id": 1, "task": "document-question-answering", "dep": [0], "args": {"image": "<GENERATED>-0",
                                                                               "text": "Which river?"}}]),
        {}, "Summarise 'A long report about rivers.' and tell me which river it is about.")
    assert fixed[1].task == "question-answering" and fixed[1].args == {"question": "Which river?",
                                                                       "text": "<GENERATED>-0"}
    validate_plan(fixed, {}, OFFERED)


def test_a_controlnet_task_given_a_photo_gets_its_control_map_first() -> None:
    photo = _upload("dancer.jpg")
    plan = [{"id": 0, "task": "openpose-text-to-image", "args": {"image": "dancer.jpg", "text": "an astronaut"}}]
    fixed = normalise(_tasks(plan), photo, "an astronaut standing like the woman in dancer.jpg", available=OFFERED)
    assert [(t.id, t.task, t.args.get("image")) for t in fixed] == [
        (0, "openpose-text-to-image", "<GENERATED>-1"), (1, "openpose-control", "dancer.jpg")]
    assert fixed[0].dep == [1] and validate_plan(fixed, photo, OFFERED).topological_order() == [1, 0]
    # the file already is a map, or no worker makes such maps: the plan is left as it is
    said = normalise(_tasks(plan), photo, "draw an astronaut on this pose map", available=OFFERED)
    assert [t.task for t in said] == ["openpose-text-to-image"]
    unserved = normalise(_tasks(plan), photo, "an astronaut like dancer.jpg", available=OFFERED - {"openpose-control"})
    assert [t.task for t in unserved] == ["openpose-text-to-image"]
    chained = [{"id": 0, "task": "canny-control", "args": {"image": "dancer.jpg"}},
               {"id": 1, "task": "canny-text-to-image", "args": {"image": "<GENERATED>-0", "text": "a robot"}}]
    assert [t.task for t in normalise(_tasks(chained), photo, "a robot like dancer.jpg", available=OFFERED)] == [
        "canny-control", "canny-text-to-image"]


def test_a_control_map_task_is_offered_only_with_its_drawing_task() -> None:
    from shared.catalog import plannable

    cpu = {"image-to-image", "canny-control", "openpose-control", "summarization"}
    assert plannable(cpu) == {"image-to-image", "summarization"}  # image-to-image's styles draw those maps
    assert plannable(cpu | {"openpose-text-to-image"}) == (cpu | {"openpose-text-to-image"}) - {"canny-control"}


def test_an_attached_recordings_name_does_not_ask_for_speech() -> None:
    clip = _upload("dentist_msg.wav", "audio")
    plan = [{"id": 0, "task": "automatic-speech-recognition", "args": {"audio": "dentist_msg.wav"}},
            {"id": 1, "task": "text-to-speech", "dep": [0], "args": {"text": "<GENERATED>-0"}}]
    fixed = normalise(_tasks(plan), clip, "can u transcibe dentist_msg.wav for me pls")
    assert [t.task for t in fixed] == ["automatic-speech-recognition"]
    kept = normalise(_tasks(plan), clip, "transcribe dentist_msg.wav and read it back to me out loud")
    assert [t.task for t in kept] == ["automatic-speech-recognition", "text-to-speech"]


def test_a_question_about_people_in_a_photo_asks_for_the_detector() -> None:
    photo = _upload("courtyard_cam.jpg")
    plan = validate_plan(_tasks([{"id": 0, "task": "image-classification", "args": {"image": "courtyard_cam.jpg"}}]),
                         photo, OFFERED)
    problems = request_problems("Is anybody in the frame of courtyard_cam.jpg?", plan, photo, OFFERED)
    assert problems == ["the request asks about the people in the picture but the plan has no object-detection "
                        "task: add it, fed with the right input"]
    assert request_problems("Is anybody mentioned in this text?", plan, {}, OFFERED) == []  # no picture: no detector


def test_a_number_arg_written_with_noise_keeps_its_number() -> None:
    photo = _upload("blocks.jpg")
    for value, want in ((":5", "5"), ("3 labels", "3"), ("a few", None), ("4", "4")):
        plan = [{"id": 0, "task": "image-classification", "args": {"image": "blocks.jpg", "top_k": value}}]
        assert normalise(_tasks(plan), photo, "what is in blocks.jpg")[0].args.get("top_k") == want, value


def test_the_language_of_a_recording_is_asked_of_the_audio_classifier() -> None:
    clip = _upload("greeting.wav", "audio")
    for text in ("<GENERATED>-0", "greeting.wav"):
        plan = [{"id": 0, "task": "language-detection", "args": {"text": text}}]
        fixed = normalise(_tasks(plan), clip, "which language is spoken in greeting.wav?")
        assert [(t.task, t.args) for t in fixed] == [("audio-classification", {"audio": "greeting.wav"})]
    transcribed = [{"id": 0, "task": "automatic-speech-recognition", "args": {"audio": "greeting.wav"}},
                   {"id": 1, "task": "language-detection", "args": {"text": "<GENERATED>-0"}}]
    assert [t.task for t in normalise(_tasks(transcribed), clip, "what language")] == [
        "automatic-speech-recognition", "language-detection"]  # reading the transcript is fine


def test_unserved_needs_by_their_words() -> None:
    from planner_service.limits import unserved_needs

    offline = OFFERED - {"text-to-image", "text-to-video", "depth-estimation", "visual-question-answering"}
    assert unserved_needs("Turn this script into a short animated clip: 'A dog chases a ball.'", offline) == [
        ("text-to-video", "make a video")]
    assert unserved_needs("What colour is the largest shape in palette.jpg?", offline) == [
        ("visual-question-answering", "answer questions about what a picture shows")]
    assert unserved_needs("How many days are in a leap year?", offline, has_image=False) == []  # no picture asked about
    assert unserved_needs("What colour is the largest shape?", offline | {"visual-question-answering"}) == []
    making = ("text-to-image", "generate an image")
    assert unserved_needs("Could you make me a watercolour painting of a lighthouse?", offline) == [making]
    assert unserved_needs("Draw a fox in the snow", offline) == [making]
    assert unserved_needs("Generate some pictures of cats", offline) == [making]
    for edit in ("Make this picture grayscale", "make the photo look like a pencil sketch",
                 "Draw boxes around the cars in street.jpg", "make my picture black and white"):
        assert unserved_needs(edit, offline) == [], edit  # a picture already given, edited or marked


def test_a_knowledge_question_is_left_to_the_llm_but_a_question_about_a_given_text_stays() -> None:
    invented = {"id": 0, "task": "question-answering", "dep": [-1],
                "args": {"text": "Romeo and Juliet is a tragedy.", "question": "Who wrote Romeo and Juliet?"}}
    assert normalise(_tasks([invented]), {}, "who wrote romeo and juliet?") == []
    echoed = {**invented, "args": {"text": "Which planet is the Red Planet?", "question": "Which planet?"}}
    assert normalise(_tasks([echoed]), {}, "Which planet do people call the Red Planet?") == []
    # a passage in the request, quoted or not, or a file: the QA task reads it
    passage = ("When does the museum open on weekends? The city museum opens at 10 on weekdays and at 9 "
               "on Saturdays and Sundays.")
    given = {**invented, "args": {"text": passage.split("? ")[1], "question": "When does it open on weekends?"}}
    assert [t.task for t in normalise(_tasks([given]), {}, passage)] == ["question-answering"]
    quoted = {**invented, "args": {"text": "Ada founded it.", "question": "Who founded it?"}}
    assert len(normalise(_tasks([quoted]), {}, "Who founded it? 'Ada founded it.'")) == 1
    with_file = {**invented, "args": {"text": "The rent is due on Friday.", "question": "What is due?"}}
    assert len(normalise(_tasks([with_file]), _upload("memo.wav", "audio"), "What is due?")) == 1


def test_a_plan_looping_one_task_type_over_one_input_is_cut_but_a_few_stay() -> None:
    text = "A long report about the rivers of Europe and their floods."
    raw = [{"id": i, "task": "question-answering", "dep": [-1], "args": {"text": text, "question": f"Q{i}?"}}
           for i in range(9)]
    fixed = normalise(_tasks(raw), {}, f"Answer some questions about '{text}'")
    assert [t.id for t in fixed] == [0, 1, 2, 3]
    three = [{"id": i, "task": "translation", "dep": [-1], "args": {"text": text, "target": lang}}
             for i, lang in enumerate(["French", "German", "Spanish"])]
    assert len(normalise(_tasks(three), {}, f"Translate '{text}' into French, German and Spanish")) == 3


def test_a_lone_classification_label_becomes_a_label_set_or_the_sentiment_model() -> None:
    def labels_after(labels: str) -> object:
        plan = [{"id": 0, "task": "text-classification", "dep": [-1], "args": {"text": "the weather is lovely",
                                                                              "labels": labels}}]
        return normalise(_tasks(plan), {}, "what is the sentiment of 'the weather is lovely'?")[0].args.get("labels")

    assert labels_after("sentiment") is None  # the sentiment model, not a one-label zero-shot that fails
    assert labels_after(" Mood ") is None
    assert labels_after("emotion") == "joy, sadness, anger, fear, surprise, love"
    assert labels_after("spam") == "spam, not spam"
    assert labels_after("sports, politics") == "sports, politics"


def test_a_language_named_as_the_goal_asks_for_a_translation_and_short_version_for_a_summary() -> None:
    plan = validate_plan(_tasks([{"id": 0, "task": "text-generation", "args": {"text": "Good morning to you all"}}]),
                         {}, OFFERED)

    def asks(text: str) -> list[str]:
        return [p.split(" but ")[0] for p in request_problems(text, plan, {}, OFFERED)]

    assert asks("Put 'good morning to you all' into Portuguese, please") == ["the request asks to translate"]
    assert asks("Say 'good morning to you all' in German and read it out") == [
        "the request asks to translate", "the request asks for speech"]
    assert asks("Is 'good morning to you all' in Spanish?") == []  # which language it is in, not a translation
    assert asks("Continue this in English: good morning to you all") == []  # the reply's language
    assert asks("Give me the short version of: good morning to you all") == ["the request asks for a summary"]


def test_a_sequenced_step_reads_the_step_before_not_the_request_again() -> None:
    request = "Please translate 'Le chat dort sur le canapé' into English, then give me a short summary of it."
    fixed = normalise(_tasks([
        {"id": 0, "task": "translation", "dep": [-1], "args": {"text": "Le chat dort sur le canapé"}},
        {"id": 1, "task": "summarization", "dep": [-1], "args": {"text": "Le chat dort sur le canapé"}},
    ]), {}, request)
    assert fixed[1].args["text"] == "<GENERATED>-0" and fixed[1].dep == [0]


def test_steps_without_a_word_of_sequence_keep_their_own_input() -> None:
    request = "Summarise 'the meeting ran long and nobody agreed' and tell me its sentiment."
    fixed = normalise(_tasks([
        {"id": 0, "task": "summarization", "dep": [-1], "args": {"text": "the meeting ran long and nobody agreed"}},
        {"id": 1, "task": "text-classification", "dep": [-1], "args": {"text": "the meeting ran long and nobody agreed"}},
    ]), {}, request)
    assert fixed[1].args["text"] == "the meeting ran long and nobody agreed" and fixed[1].dep == [-1]


def test_a_passage_the_user_quoted_for_the_later_step_stays_its_input() -> None:
    request = "Translate 'Guten Morgen' into English, then check how similar 'Good evening' is to the translation."
    fixed = normalise(_tasks([
        {"id": 0, "task": "translation", "dep": [-1], "args": {"text": "Guten Morgen"}},
        {"id": 1, "task": "sentence-similarity", "dep": [-1], "args": {"text": "Good evening", "text2": "Guten Morgen"}},
    ]), {}, request)
    assert fixed[1].args["text"] == "Good evening"  # the user's own sentence for this step
    assert fixed[1].args["text2"] == "Guten Morgen"  # only the content slot is re-pointed


def test_a_question_is_never_re_pointed_at_an_earlier_output() -> None:
    request = "Caption photo.png, then answer: what colour is the car?"
    fixed = normalise(_tasks([
        {"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "photo.png"}},
        {"id": 1, "task": "visual-question-answering", "dep": [-1],
         "args": {"image": "photo.png", "text": "what colour is the car?"}},
    ]), _upload("photo.png"), request)
    assert fixed[1].args["text"] == "what colour is the car?"


def test_a_later_step_reads_the_text_a_step_in_between_made() -> None:
    request = "Transcribe memo.wav, then summarise it, and give me a French translation of the summary."
    plan = [
        {"id": 0, "task": "automatic-speech-recognition", "dep": [-1], "args": {"audio": "memo.wav"}},
        {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}},
        {"id": 2, "task": "translation", "dep": [0], "args": {"text": "<GENERATED>-0", "target": "French"}},
    ]
    fixed = normalise(_tasks(plan), _upload("memo.wav", "audio"), request)
    assert fixed[2].args["text"] == "<GENERATED>-1" and fixed[2].dep == [1]
    # two translations of one transcript are siblings, not a chain
    siblings = normalise(_tasks([*plan[:1], {**plan[2], "id": 1}, {**plan[2], "id": 2, "args": {
        "text": "<GENERATED>-0", "target": "Spanish"}}]), _upload("memo.wav", "audio"),
        "Transcribe memo.wav, then translate it into French and Spanish.")
    assert [t.args["text"] for t in siblings[1:]] == ["<GENERATED>-0", "<GENERATED>-0"]
