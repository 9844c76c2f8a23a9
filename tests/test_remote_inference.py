"""Remote inference against a fake Hugging Face endpoint (real HTTP): the task calls and their typed
outputs, retries with backoff, errors in hgq's terms, and -- on real workers -- fallback to the
next candidate model, recorded in the run."""

from __future__ import annotations

import base64
import time

import pytest

from shared.errors import ExpertError, ModelUnavailable, TransientExpertError
from tests.fake_hf_endpoint import FakeHFEndpoint, Step, png
from tests.helpers import run_plan
from workers.expert import Media
from workers.remote.experts import RemoteExpert, remote_expert_class
from workers.remote.transport import RetryPolicy, call_with_retries

POLICY = RetryPolicy(retries=2, backoff_s=0.01, backoff_max_s=0.05)


def _expert(fake: FakeHFEndpoint, task: str, name: str = "m", timeout_s: float = 2.0,
            policy: RetryPolicy = POLICY) -> RemoteExpert:
    cls = remote_expert_class(f"test/{name}", task, "text", "endpoint", fake.url(task, name), timeout_s=timeout_s)
    expert = cls()
    expert.ensure_loaded()
    expert._policy = policy  # the unit tests' own retry policy (workers take it from the settings)
    return expert


IMAGE = Media(png(), "image/png", "photo.png")
AUDIO = Media(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28), "audio/wav", "a.wav")


# --- the task calls, one HTTP call each ---------------------------------------------------------
def test_text_classification_maps_to_labels(fake_hf) -> None:  # type: ignore[no-untyped-def]
    result = _expert(fake_hf, "text-classification").run({"text": "I love it"}, {})
    assert result.text == "POSITIVE"
    assert [(lab.label, lab.score) for lab in result.labels] == [("POSITIVE", 0.91), ("NEGATIVE", 0.09)]
    seen = fake_hf.calls(fake_hf.url("text-classification", "m"))
    assert len(seen) == 1 and seen[0].json()["inputs"] == "I love it"


def test_zero_shot_labels_param(fake_hf) -> None:  # type: ignore[no-untyped-def]
    fake_hf.script(fake_hf.url("text-classification", "zs"),
                   Step(body=[{"label": "sports", "score": 0.2}, {"label": "politics", "score": 0.7}]))
    result = _expert(fake_hf, "text-classification", "zs").run({"text": "vote"}, {"labels": "sports, politics"})
    assert result.text == "politics"
    sent = fake_hf.calls(fake_hf.url("text-classification", "zs"))[0].json()
    assert sent["parameters"]["candidate_labels"] == ["sports", "politics"]


def test_image_classification_sends_the_image_bytes(fake_hf) -> None:  # type: ignore[no-untyped-def]
    result = _expert(fake_hf, "image-classification").run({"image": IMAGE}, {})
    assert result.text == "tabby cat" and result.labels[0].score == pytest.approx(0.82)
    seen = fake_hf.calls(fake_hf.url("image-classification", "m"))[0]
    assert seen.body == IMAGE.data and seen.headers["content-type"] == "image/png"
    # with parameters, HF's protocol sends the image base64-encoded in JSON
    _expert(fake_hf, "image-classification", "k").run({"image": IMAGE}, {"top_k": 1})
    sent = fake_hf.calls(fake_hf.url("image-classification", "k"))[0].json()
    assert sent["parameters"] == {"top_k": 1} and base64.b64decode(sent["inputs"]) == IMAGE.data


def test_object_detection_keeps_the_asked_labels(fake_hf) -> None:  # type: ignore[no-untyped-def]
    fake_hf.always(fake_hf.url("object-detection", "od"), Step(body=[
        {"label": "cat", "score": 0.9, "box": {"xmin": 0, "ymin": 0, "xmax": 3, "ymax": 3}},
        {"label": "person", "score": 0.8, "box": {"xmin": 1, "ymin": 1, "xmax": 4, "ymax": 5}}]))
    result = _expert(fake_hf, "object-detection", "od").run({"image": IMAGE}, {"labels": "person"})
    assert [b.label for b in result.boxes] == ["person"] and result.text == "1 object(s): person (0.80)"


@pytest.mark.parametrize("task, inputs, check", [
    ("object-detection", {"image": IMAGE},
     lambda r: r.boxes[0].label == "cat" and (r.boxes[0].x, r.boxes[0].width) == (1, 4) and r.media[0].kind == "image"),
    ("image-segmentation", {"image": IMAGE},
     lambda r: r.labels[0].label == "cat" and r.media[0].name == "mask.png" and r.data["coverage"] == 1.0),
    ("depth-estimation", {"image": IMAGE}, lambda r: r.media[0].data.startswith(b"\x89PNG")),
    ("text-to-image", {"text": "a red square"}, lambda r: r.media[0].data.startswith(b"\x89PNG")),
    ("image-to-text", {"image": IMAGE}, lambda r: r.text == "a cat on a sofa"),
    ("visual-question-answering", {"image": IMAGE, "text": "how many?"}, lambda r: r.text == "two"),
    ("summarization", {"text": "A long text about cats."}, lambda r: r.text.startswith("summary of: A long")),
    ("translation", {"text": "hello"}, lambda r: r.text == "traduit: hello"),
    ("question-answering", {"text": "Paris is in France.", "question": "where?"}, lambda r: r.text == "Paris"),
    ("sentence-similarity", {"text": "a", "text2": "b"}, lambda r: r.data["similarity"] == 0.75),
    ("token-classification", {"text": "Maria went"}, lambda r: r.data["entities"][0]["entity"] == "PER"),
    ("conversational", {"text": "hi"}, lambda r: r.text == "chat reply to: hi"),
    ("automatic-speech-recognition", {"audio": AUDIO}, lambda r: r.text == "hello world"),
    ("text-to-speech", {"text": "hi"}, lambda r: r.media[0].mime == "audio/wav" and r.media[0].kind == "audio"),
    ("audio-classification", {"audio": AUDIO}, lambda r: r.labels[0].label == "tabby cat"),
])
def test_task_outputs_are_typed(fake_hf, task, inputs, check) -> None:  # type: ignore[no-untyped-def]
    result = _expert(fake_hf, task).run(inputs, {})
    assert check(result), result


# --- retries and errors -----------------------------------------------------------------------
def test_503_twice_then_success_after_retries(fake_hf) -> None:  # type: ignore[no-untyped-def]
    url = fake_hf.url("text-classification", "flaky")
    fake_hf.script(url, Step(503), Step(503))
    result = _expert(fake_hf, "text-classification", "flaky").run({"text": "ok"}, {})
    assert result.text == "POSITIVE"
    assert len(fake_hf.calls(url)) == 3


def test_persistent_503_is_transient_and_exhausted(fake_hf) -> None:  # type: ignore[no-untyped-def]
    url = fake_hf.url("text-classification", "down")
    fake_hf.always(url, Step(503, {"error": "Model is currently loading"}))
    with pytest.raises(TransientExpertError, match="HTTP 503: Model is currently loading") as info:
        _expert(fake_hf, "text-classification", "down").run({"text": "x"}, {})
    assert info.value.exhausted and "after 3 tries" in str(info.value)
    assert len(fake_hf.calls(url)) == 3


def test_400_is_permanent_with_the_servers_message_and_not_retried(fake_hf) -> None:  # type: ignore[no-untyped-def]
    url = fake_hf.url("text-classification", "strict")
    fake_hf.always(url, Step(400, {"error": "Input is too long"}))
    with pytest.raises(ExpertError, match="HTTP 400: Input is too long") as info:
        _expert(fake_hf, "text-classification", "strict").run({"text": "x"}, {})
    assert not isinstance(info.value, TransientExpertError)
    assert len(fake_hf.calls(url)) == 1


def test_404_means_the_model_is_unavailable(fake_hf) -> None:  # type: ignore[no-untyped-def]
    fake_hf.always(fake_hf.url("text-classification", "gone"), Step(404, {"error": "Model not found"}))
    with pytest.raises(ModelUnavailable, match="Model not found"):
        _expert(fake_hf, "text-classification", "gone").run({"text": "x"}, {})


def test_slow_endpoint_times_out(fake_hf) -> None:  # type: ignore[no-untyped-def]
    url = fake_hf.url("summarization", "slow")
    fake_hf.always(url, Step(delay_s=3.0))
    started = time.monotonic()
    expert = _expert(fake_hf, "summarization", "slow", timeout_s=0.3, policy=RetryPolicy(1, 0.01, 0.01))
    with pytest.raises(TransientExpertError, match="timed out"):
        expert.run({"text": "x"}, {})
    assert time.monotonic() - started < 2.5  # two 0.3 s tries, not the server's 3 s
    assert len(fake_hf.calls(url)) == 2


def test_endpoint_token_only_when_configured(fake_hf, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = fake_hf.url("depth-estimation", "tok")
    anonymous = remote_expert_class("test/anon", "depth-estimation", "vision", "endpoint", url)()
    anonymous.ensure_loaded()
    anonymous.run({"image": IMAGE}, {})
    monkeypatch.setenv("MY_ENDPOINT_TOKEN", "secret-123")
    keyed = remote_expert_class("test/keyed", "depth-estimation", "vision", "endpoint", url,
                                token_env="MY_ENDPOINT_TOKEN")()
    keyed.ensure_loaded()
    keyed.run({"image": IMAGE}, {})
    first, second = fake_hf.calls(url)
    assert "authorization" not in first.headers and second.headers["authorization"] == "Bearer secret-123"
    assert first.headers["content-type"] == "image/png" and first.body == IMAGE.data
    monkeypatch.delenv("MY_ENDPOINT_TOKEN")
    unset = remote_expert_class("test/unset", "depth-estimation", "vision", "endpoint", url, token_env="MY_ENDPOINT_TOKEN")()
    with pytest.raises(ModelUnavailable, match="MY_ENDPOINT_TOKEN"):
        unset.ensure_loaded()


def test_unreachable_endpoint_is_transient() -> None:
    cls = remote_expert_class("test/nowhere", "summarization", "text", "endpoint", "http://127.0.0.1:9/x", timeout_s=1)
    expert = cls()
    expert.ensure_loaded()
    expert._policy = RetryPolicy(0, 0, 0)
    with pytest.raises(TransientExpertError, match="cannot connect"):
        expert.run({"text": "x"}, {})


def test_backoff_doubles_and_retry_after_wins() -> None:
    waits: list[float] = []
    replies = iter([TimeoutError(), TimeoutError(), "ok"])

    def flaky() -> str:
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    assert call_with_retries(flaky, "m", RetryPolicy(2, 0.5, 10), sleep=waits.append) == "ok"
    assert waits == [0.5, 1.0]
    assert RetryPolicy(2, 0.5, 10).delay(0, retry_after=3.0) == 3.0
    assert RetryPolicy(2, 0.5, 2).delay(5, retry_after=None) == 2.0  # capped


def test_catalogue_candidates_only_with_a_token(settings) -> None:  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    from workers.expert import expert_classes
    from workers.model_sources import catalogue_remote_classes, register_model_sources
    from workers.pools import import_pool

    offline = settings.model_copy(update={"hf_token": None, "models_file": None})
    import_pool("audio")
    before = {c.model_id for c in expert_classes("audio")}
    register_model_sources("audio", offline)
    assert {c.model_id for c in expert_classes("audio")} == before  # no token, no file: nothing remote

    on = settings.model_copy(update={"hf_token": SecretStr("hf_test"), "hf_remote": "all", "models_file": None})
    classes = catalogue_remote_classes("vision", on)
    by_task: dict[str, list[str]] = {}
    for cls in classes:
        by_task.setdefault(cls.task, []).append(cls.model_id)
        assert cls.backend == "hf-inference" and cls.pool == "vision"
    assert {"text-to-image", "depth-estimation", "object-detection", "image-to-text"} <= set(by_task)
    assert all(len(ids) == on.remote_models_per_task for ids in by_task.values())
    missing = catalogue_remote_classes("vision", on.model_copy(update={"hf_remote": "missing"}))
    assert "image-to-image" not in {c.task for c in missing}  # served locally (Pillow filters)
    assert "text-to-image" in {c.task for c in missing}


# --- selection keeps the next candidates ---------------------------------------------------------
def test_selection_records_ranked_fallbacks_capped() -> None:
    from planner_service.selection import choose_with_llm, select_models
    from shared.plan import PlanTask, validate_plan
    from shared.registry import ServedModel

    served = {"text-classification": [ServedModel(model_id=f"m/{n}", task="text-classification",
                                                  description=f"{w} sentiment") for n, w in
                                      (("a", "alpha"), ("b", "bravo"), ("c", "charlie"), ("d", "delta"))]}
    plan = validate_plan([PlanTask(id=0, task="text-classification", args={"text": "x"})])
    select_models(None, "charlie", plan, served, max_fallbacks=2)
    assert plan.nodes[0].model == "m/c" and plan.nodes[0].fallbacks == ["m/a", "m/b"]
    assert plan.nodes[0].public()["fallbacks"] == ["m/a", "m/b"]

    class ChoosesD:
        def chat_json(self, *_: object) -> dict[str, object]:
            return {"choices": [{"id": 0, "model": "m/d", "reason": "best"}]}

    select_models(ChoosesD(), "charlie", plan, served, max_fallbacks=3)  # type: ignore[arg-type]
    assert plan.nodes[0].model == "m/c", "m/c is clearly ahead for 'charlie': no LLM call to overrule it"
    assert plan.nodes[0].fallbacks == ["m/a", "m/b", "m/d"]
    # an LLM choice among close candidates puts the ranked top first among as many fallbacks
    choose_with_llm(ChoosesD(), "charlie", plan, {0: served["text-classification"]})  # type: ignore[arg-type]
    assert plan.nodes[0].model == "m/d" and plan.nodes[0].fallbacks == ["m/c", "m/a", "m/b"]
    select_models(None, "charlie", plan, {"text-classification": served["text-classification"][:1]})
    assert plan.nodes[0].fallbacks == []


def test_which_failures_fall_back(settings) -> None:  # type: ignore[no-untyped-def]
    import pickle

    from workers.node_runner import _falls_back

    assert _falls_back(TransientExpertError("503", exhausted=True), 0, settings)  # retried in the call already
    assert not _falls_back(TransientExpertError("busy"), 0, settings)  # Celery retries the same model first
    assert _falls_back(TransientExpertError("busy"), settings.task_max_retries, settings)
    assert _falls_back(ModelUnavailable("404"), 0, settings)
    assert _falls_back(RuntimeError("bug"), 0, settings)
    assert not _falls_back(ExpertError("400: bad input"), 0, settings)  # the input's fault: no other model
    assert str(pickle.loads(pickle.dumps(TransientExpertError("x", exhausted=True)))) == "x"


# --- on real workers: fallback to the next candidate, recorded in the run ---------------------------
def test_always_503_falls_back_to_the_next_candidate(models_stack, fake_llm) -> None:  # type: ignore[no-untyped-def]
    flaky, steady = models_stack.url("remote/a-flaky"), models_stack.url("remote/c-steady")
    fake_hf = models_stack.fake
    fake_hf.always(flaky, Step(503, {"error": "overloaded"}))
    plan = [{"id": 0, "task": "text-classification", "args": {"text": "what a lovely day"}}]
    view = run_plan(models_stack.client, plan, text="quokka")
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    assert view.plan[0]["model"] == "remote/a-flaky" and view.plan[0]["fallbacks"][0] == "remote/c-steady"
    task = view.tasks["0"]
    assert task.model == "remote/c-steady" and task.output.text == "POSITIVE"
    tried = [(a.model, a.outcome) for a in task.model_attempts]
    assert tried == [("remote/a-flaky", "fallback"), ("remote/c-steady", "succeeded")]
    assert "HTTP 503: overloaded (after 2 tries)" in task.model_attempts[0].error
    assert len(fake_hf.calls(flaky)) == 2 and len(fake_hf.calls(steady)) == 1  # HGQ_REMOTE_RETRIES=1
    assert task.attempts == 1  # one delivery: the fallback ran in it


def test_slow_endpoint_times_out_and_falls_back(models_stack, fake_llm) -> None:  # type: ignore[no-untyped-def]
    slow = models_stack.url("remote/b-slow")
    models_stack.fake.always(slow, Step(delay_s=5.0))
    plan = [{"id": 0, "task": "text-classification", "args": {"text": "meh"}}]
    view = run_plan(models_stack.client, plan, text="wombat")
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    task = view.tasks["0"]
    assert view.plan[0]["model"] == "remote/b-slow" and task.model == "remote/c-steady"
    assert task.model_attempts[0].model == "remote/b-slow" and "timed out" in task.model_attempts[0].error
    assert task.model_attempts[0].seconds < 4.5  # two 1 s tries (HGQ_REMOTE_TIMEOUT_S=1), not 2 x 5 s


def test_400_fails_the_node_without_retry_or_fallback(models_stack, fake_llm) -> None:  # type: ignore[no-untyped-def]
    strict = models_stack.url("remote/d-strict")
    models_stack.fake.always(strict, Step(400, {"error": "numbat refuses this input"}))
    plan = [{"id": 0, "task": "text-classification", "args": {"text": "x"}},
            {"id": 1, "task": "summarization", "args": {"text": "<GENERATED>-0"}}]
    view = run_plan(models_stack.client, plan, text="numbat")
    assert view.status == "failed"
    task = view.tasks["0"]
    assert task.status == "failed" and "HTTP 400: numbat refuses this input" in task.error
    assert view.tasks["1"].status == "skipped"
    assert len(models_stack.fake.calls(strict)) == 1 and task.attempts == 1
    assert [(a.model, a.outcome) for a in task.model_attempts] == [("remote/d-strict", "failed")]
