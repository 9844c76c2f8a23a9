"""The LLM stages against the scripted OpenAI-compatible server, on the real stack."""

from __future__ import annotations

import json

from shared.run_models import RequestCreate
from tests.helpers import wait_final

GOOD_PLAN = {"tasks": [
    {"id": 0, "task": "diag-text", "dep": [-1], "args": {"text": "hello", "name": "a"}},
    {"id": 1, "task": "diag-text", "dep": [0], "args": {"text": "<GENERATED>-0", "name": "b"}},
]}


def _ask(client, text: str = "do the diagnostic thing"):  # type: ignore[no-untyped-def]
    return wait_final(client, client.submit(RequestCreate(text=text)))


def test_llm_plan_is_executed_and_usage_accounted(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", GOOD_PLAN)
    view = _ask(client)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    assert [t["task"] for t in view.plan] == ["diag-text", "diag-text"]
    assert view.tasks["1"].output.text == "b(a(hello))"
    assert view.usage["plan"].calls == 1 and view.usage["respond"].calls == 1
    assert view.usage["plan"].prompt_tokens > 0 and view.usage["respond"].completion_tokens > 0
    plan_call = fake_llm.calls("plan")[0]
    assert plan_call["response_format"]["type"] == "json_schema"  # constrained output requested
    system = plan_call["messages"][0]["content"]
    assert "diag-text" in system and "text-to-image" not in system  # only what live workers serve


def test_invalid_plan_gets_one_repair_round(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", "this is not json", GOOD_PLAN)
    view = _ask(client)
    assert view.status == "succeeded"
    calls = fake_llm.calls("plan")
    assert len(calls) == 2
    assert "invalid" in calls[1]["messages"][-1]["content"] and "not JSON" in calls[1]["messages"][-1]["content"]


def test_plan_invalid_twice_fails_the_run_with_the_reason(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    bad = {"tasks": [{"id": 0, "task": "teleportation", "dep": [-1], "args": {}}]}
    fake_llm.script("plan", bad, bad)
    view = _ask(client)
    assert view.status == "failed"
    assert "unknown task type 'teleportation'" in view.error
    assert view.tasks == {} and fake_llm.calls("respond") == []
    assert len(fake_llm.calls("plan")) == 2


def test_repair_that_drops_every_task_is_an_error_not_a_chat_answer(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    bad = {"tasks": [{"id": 0, "task": "translation", "dep": [-1],
                      "args": {"text": "Bonjour", "target_language": "English"}}]}
    fake_llm.script("plan", bad, {"tasks": []})
    view = _ask(client, "translate Bonjour into English")
    assert view.status == "failed"
    assert "dropped all tasks" in view.error and "unknown arg 'target_language'" in view.error
    assert fake_llm.calls("respond") == []


def test_planner_prompt_lists_optional_args_of_each_task(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", {"tasks": [{"id": 0, "task": "translation", "dep": [-1],
                                        "args": {"text": "Good morning", "target": "French"}}]})
    fake_llm.script("respond", "Done.")
    _ask(client, "translate Good morning into French")
    system = fake_llm.calls("plan")[0]["messages"][0]["content"]
    translation_line = next(line for line in system.splitlines() if line.strip().startswith("translation("))
    assert "target" in translation_line


def test_empty_plan_means_the_llm_answers_directly(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", {"tasks": []})
    fake_llm.script("respond", "Hello to you too!")
    view = _ask(client, "hi there")
    assert view.status == "succeeded" and view.response == "Hello to you too!"
    assert fake_llm.calls("respond")[0]["messages"][-1]["content"] == "hi there"


def test_llm_outage_in_the_answer_still_returns_the_results(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", GOOD_PLAN)
    fake_llm.status["respond"] = 500
    view = _ask(client)
    assert view.status == "failed" and "response stage failed" in view.error
    assert "b(a(hello))" in view.response  # the raw results are not lost


def test_respond_prompt_carries_outputs(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", GOOD_PLAN)
    _ask(client)
    prompt = fake_llm.calls("respond")[0]["messages"][-1]["content"]
    results = json.loads(prompt.split("Results: ", 1)[1])
    assert results[1]["text"] == "b(a(hello))" and results[1]["model"] == "hgq/diag-text"


def test_endpoint_rejecting_json_schema_gets_the_json_object_form(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    seen = []

    def plan_reply(body):  # type: ignore[no-untyped-def]
        seen.append(body.get("response_format", {}).get("type"))
        return json.dumps(GOOD_PLAN)

    fake_llm.script("plan", plan_reply)
    fake_llm.status["plan"] = 200
    # first answer: the llama.cpp server's refusal of json_schema
    from tests.fake_llm import FakeLLM  # noqa: F401

    original = fake_llm._reply

    def refuse_schema(stage, body):  # type: ignore[no-untyped-def]
        if stage == "plan" and body.get("response_format", {}).get("type") == "json_schema":
            return "Input should be 'text' or 'json_object': json_schema", 500
        return original(stage, body)

    fake_llm._reply = refuse_schema
    try:
        view = _ask(client)
    finally:
        fake_llm._reply = original
    assert view.status == "succeeded", view.error
    assert seen == ["json_object"]


def test_endpoint_down_fails_the_run_without_a_repair_round(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.status["plan"] = 503
    view = _ask(client)
    assert view.status == "failed" and "LLM endpoint failed in stage 'plan'" in view.error
    assert "invalid plan" not in view.error


def test_multi_turn_refers_to_an_earlier_generated_image(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    import io
    import uuid
    from pathlib import Path

    from PIL import Image

    conv = uuid.uuid4().hex[:12]
    sign = Path(__file__).resolve().parent.parent / "examples" / "sign.png"
    fake_llm.script("plan", {"tasks": [{"id": 0, "task": "image-to-image", "dep": [-1],
                                        "args": {"image": "sign.png", "style": "canny"}}]})
    fake_llm.script("respond", "Here are the edges: see the generated file.")
    first = wait_final(client, client.submit(RequestCreate(text="draw the edges of sign.png", conversation_id=conv,
                                                           uploads=client.uploads_for([sign]))))
    assert first.status == "succeeded", first.error
    edges = first.tasks["0"].output.artifact("image")
    from shared.artifacts import artifact_file_name

    name = artifact_file_name(0, edges)
    fake_llm.script("plan", {"tasks": [{"id": 0, "task": "image-to-image", "dep": [-1],
                                        "args": {"image": name, "style": "invert"}}]})
    second = wait_final(client, client.submit(RequestCreate(text="now invert that image", conversation_id=conv)))
    assert second.status == "succeeded", second.error
    plan_call = fake_llm.calls("plan")[1]
    history = " ".join(m["content"] for m in plan_call["messages"])
    assert "draw the edges of sign.png" in history and "Here are the edges" in history and name in history
    inverted = Image.open(io.BytesIO(client.artifacts.get(second.tasks["0"].output.artifact("image").id)))
    original = Image.open(io.BytesIO(client.artifacts.get(edges.id))).convert("L")
    assert inverted.size == original.size
    assert inverted.convert("L").getpixel((5, 5)) == 255 - original.getpixel((5, 5))
    # "that" is the latest output, even when the planner picks the original upload (a 1.5B model's habit)
    inverted_name = artifact_file_name(0, second.tasks["0"].output.artifact("image"))
    fake_llm.script("plan", {"tasks": [{"id": 0, "task": "image-to-image", "dep": [-1],
                                        "args": {"image": "sign.png", "style": "gray"}}]})
    fourth = wait_final(client, client.submit(RequestCreate(text="make that black and white", conversation_id=conv)))
    assert fourth.status == "succeeded", fourth.error
    assert fourth.plan[0]["args"]["image"] == inverted_name
    # naming the older file keeps it
    fake_llm.script("plan", {"tasks": [{"id": 0, "task": "image-to-image", "dep": [-1],
                                        "args": {"image": "sign.png", "style": "gray"}}]})
    fifth = wait_final(client, client.submit(RequestCreate(text="make sign.png itself gray", conversation_id=conv)))
    assert fifth.plan[0]["args"]["image"] == "sign.png"
    # the direct answer of a later chat turn gets the history too
    fake_llm.script("plan", {"tasks": []})
    third = wait_final(client, client.submit(RequestCreate(text="thanks!", conversation_id=conv)))
    assert third.status == "succeeded"
    assert "now invert that image" in " ".join(m["content"] for m in fake_llm.calls("respond")[-1]["messages"])


def test_a_later_turn_reuses_the_text_an_earlier_turn_read_from_a_file(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    import uuid
    from pathlib import Path

    conv = uuid.uuid4().hex[:12]
    sign = Path(__file__).resolve().parent.parent / "examples" / "sign.png"
    ocr = {"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "sign.png"}}
    ocr_then_summary = {"tasks": [ocr, {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}}]}
    fake_llm.script("plan", {"tasks": [ocr]})
    first = wait_final(client, client.submit(RequestCreate(text="what does sign.png say?", conversation_id=conv,
                                                           uploads=client.uploads_for([sign]))))
    assert first.status == "succeeded", first.error
    read = first.tasks["0"].output.text
    assert read.strip()
    # the 1.5B planner's habit: the OCR again in the follow-up; the text read in the first turn is used
    fake_llm.script("plan", ocr_then_summary)
    second = wait_final(client, client.submit(RequestCreate(text="now shorten that to one line", conversation_id=conv)))
    assert second.status == "succeeded", second.error
    assert [t["task"] for t in second.plan] == ["summarization"] and second.plan[0]["args"]["text"] == read
    assert second.tasks[str(second.plan[0]["id"])].output.text
    # asked to read it again, it is read again
    fake_llm.script("plan", ocr_then_summary)
    third = wait_final(client, client.submit(RequestCreate(text="read sign.png again and sum it up", conversation_id=conv)))
    assert [t["task"] for t in third.plan] == ["image-to-text", "summarization"]


def test_history_is_trimmed_oldest_first() -> None:
    from shared.conversation import ConversationStore, Turn

    class FakeRedis:  # the trimming logic only reads turns
        def __init__(self, turns):  # type: ignore[no-untyped-def]
            self.turns = turns

        def lrange(self, *_):  # type: ignore[no-untyped-def]
            return [t.model_dump_json() for t in self.turns]

    turns = [Turn(run_id=str(i), user="u", request=f"request {i} " + "x" * 400, answer=f"answer {i}") for i in range(5)]
    store = ConversationStore(FakeRedis(turns), "hgq", "c", 60)  # type: ignore[arg-type]
    history = store.history(max_tokens=250)
    assert [m["content"].split()[1] for m in history if m["role"] == "user"] == ["3", "4"]


SUMMARY_PLAN = {"tasks": [{"id": 0, "task": "summarization", "dep": [-1],
                           "args": {"text": "The venue is booked. The budget is approved. Maria sends invites."}}]}


CLOSE_CALL = "summarise this: offline and fluent"


def test_interchangeable_candidates_are_decided_by_rank_without_a_select_call(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", SUMMARY_PLAN)
    view = _ask(client, "summarise this")  # extractive or LLM summary: nothing in the request tells them apart
    assert view.status == "succeeded"
    assert fake_llm.calls("select") == []
    assert "interchangeable" in view.selection["0"]


def test_one_select_call_and_its_choice_is_used_with_its_reason(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", SUMMARY_PLAN)
    fake_llm.script("select", {"choices": [{"id": 0, "model": "llm/summarization", "reason": "fluent summary"}]})
    view = _ask(client, CLOSE_CALL)  # both summarisers fit it about as well: a real choice
    assert view.status == "succeeded"
    assert view.plan[0]["model"] == "llm/summarization" and view.selection["0"] == "fluent summary"
    assert view.tasks["0"].output.text.startswith("LLM[")  # ran through the LLM on the text pool
    assert view.usage["task"].calls == 1 and view.usage["select"].calls == 1
    options = fake_llm.calls("select")[0]["messages"][-1]["content"]
    assert "summa/textrank" in options and "llm/summarization" in options


def test_a_choice_outside_the_candidates_is_ignored(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", SUMMARY_PLAN)
    fake_llm.script("select", {"choices": [{"id": 0, "model": "gpt-17-ultra", "reason": "best"}]})
    view = _ask(client, CLOSE_CALL)
    assert view.status == "succeeded"
    assert view.plan[0]["model"] == "llm/summarization"  # the top-ranked for this request
    assert "not a candidate" in view.selection["0"]


def test_single_candidates_need_no_select_call(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", GOOD_PLAN)
    _ask(client)
    assert fake_llm.calls("select") == []


def test_answer_is_streamed_as_events_while_it_is_generated(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", GOOD_PLAN)
    fake_llm.script("respond", "The result is b(a(hello)) and all went well.")
    view = _ask(client)
    events = client.run(view.request_id).events()
    pieces = [e.data["delta"] for e in events if e.type == "answer"]
    assert len(pieces) == 8 and "".join(pieces) == view.response
    assert [e.type for e in events].index("done") > max(i for i, e in enumerate(events) if e.type == "answer")
    assert view.usage["respond"].completion_tokens == 8  # usage from the stream's last chunk
    assert fake_llm.calls("respond")[0]["stream"] is True


def test_the_answer_is_grounded_in_facts_and_says_what_hgq_is(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", GOOD_PLAN)
    _ask(client)
    messages = fake_llm.calls("respond")[0]["messages"]
    system = messages[0]["content"]
    assert "You are hgq" in system and "not made by OpenAI" in system
    assert "only the facts" in system and "Do not describe the workflow" in system
    results = json.loads(messages[-1]["content"].split("Results: ", 1)[1])
    assert results[1]["input"] == {"text": "a(hello)"}  # what task 1 was given: a speech task's spoken text


def test_a_request_nothing_here_serves_is_told_what_is_missing_without_an_llm_apology(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", {"tasks": []})
    view = _ask(client, "Please draw me a picture of a cat wearing a hat")
    assert view.status == "succeeded"
    assert "no running worker serves text-to-image" in view.response and "HF_TOKEN" in view.response
    assert "HGQ_MODELS_FILE" in view.response and "sorry" not in view.response.lower()
    assert fake_llm.calls("respond") == []  # nothing ran: no LLM call to write an apology


def test_a_request_nothing_serves_still_gets_the_honest_limit_when_planning_fails(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    # the small planner's substitute for a drawing: a filter on its own output, twice (seen for real)
    fake_llm.script("plan", {"tasks": [{"id": 0, "task": "image-to-image", "dep": [-1],
                                        "args": {"image": "<GENERATED>-0", "style": "sketch"}}]})
    view = _ask(client, "please draw me a red fox sleeping under a tree")
    assert view.status == "failed" and "references its own output" in (view.error or "")
    assert view.response.startswith("I can't generate an image here: no running worker serves text-to-image.")
    assert "HF_TOKEN" in view.response and "could not plan" not in view.response


def test_who_are_you_is_answered_as_hgq(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script("plan", {"tasks": []})
    _ask(client, "who made you?")
    assert fake_llm.calls("respond")[0]["messages"][0]["content"].startswith("You are hgq")


def test_an_answer_that_does_not_say_a_task_failed_gets_a_note_saying_it(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    """A small LLM may answer the failed part from a guess ("the sentiment is positive"): the user
    is told plainly which task failed and why, so the guess is not taken for a result."""
    plan = {"tasks": [{"id": 0, "task": "diag-text", "dep": [-1], "args": {"text": "hola", "name": "a"}},
                      {"id": 1, "task": "diag-text", "dep": [-1], "args": {"text": "x", "name": "b", "fail": "permanent"}}]}
    fake_llm.script("plan", plan)
    fake_llm.script("respond", "The translation is hola and the sentiment is positive.")
    view = _ask(client, "translate it and tell me its sentiment")
    assert view.status == "failed" and view.tasks["1"].status == "failed"
    assert view.response.startswith("The translation is hola and the sentiment is positive.")
    assert "Note: task 1 (diag-text) failed: diagnostic permanent failure" in view.response
    # an answer that already says so gets no note
    fake_llm.script("plan", plan)
    fake_llm.script("respond", "The translation is hola; the sentiment step failed.")
    assert "Note:" not in _ask(client, "translate it and tell me its sentiment").response
