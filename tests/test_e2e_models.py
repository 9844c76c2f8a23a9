"""Cross-modal chains on real models through the real stack (HuggingGPT gets both wrong)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.plan import parse_plan_json
from shared.run_models import RequestCreate
from tests.helpers import wait_final
from tests.media import words

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.slow


def _transcribe(client, art, language: str = "en") -> str:  # type: ignore[no-untyped-def]
    from workers.audio.experts import WhisperASR
    from workers.expert import Media, get_expert

    expert = get_expert(WhisperASR.model_id)
    expert.ensure_loaded()
    result = expert.run({"audio": Media(client.artifacts.get(art.id), art.mime)}, {"language": language})
    return result.text or ""


def test_speech_to_summary_to_speech_speaks_the_summary(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    uploads = client.uploads_for([EXAMPLES / "meeting.wav"])
    plan = parse_plan_json([
        {"id": 0, "task": "automatic-speech-recognition", "dep": [-1], "args": {"audio": "meeting.wav"}},
        {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}},
        {"id": 2, "task": "text-to-speech", "dep": [1], "args": {"text": "<GENERATED>-1"}},
    ])
    view = wait_final(client, client.submit(RequestCreate(text="summarise and speak", uploads=uploads, plan=plan)),
                      timeout_s=180)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    transcript = view.tasks["0"].output.text
    summary = view.tasks["1"].output.text
    assert "lisbon" in transcript.lower() and "catering" in transcript.lower()
    assert 0 < len(summary) < len(transcript)
    assert view.tasks["1"].model == "summa/textrank"  # top-ranked (local first on a tie)
    assert fake_llm.calls("select") == []  # nothing in "summarise and speak" tells the summarisers apart
    audio = view.tasks["2"].output.artifact("audio")
    assert audio is not None and audio.mime == "audio/wav"
    spoken = set(words(_transcribe(client, audio)))
    summary_words = words(summary)
    assert sum(w in spoken for w in summary_words) >= 0.8 * len(summary_words)  # it speaks the SUMMARY
    assert "catering" not in spoken  # ... not the whole transcript


def test_ocr_to_speech_speaks_the_text_in_the_image(client) -> None:  # type: ignore[no-untyped-def]
    uploads = client.uploads_for([EXAMPLES / "sign.png"])
    plan = parse_plan_json([
        {"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "sign.png"}},
        {"id": 1, "task": "text-classification", "dep": [0], "args": {"text": "<GENERATED>-0"}},
        {"id": 2, "task": "text-to-speech", "dep": [0], "args": {"text": "<GENERATED>-0"}},
    ])
    view = wait_final(client, client.submit(RequestCreate(text="read it", uploads=uploads, plan=plan)),
                      timeout_s=180)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    assert "Closed on Sundays" in view.tasks["0"].output.text
    assert view.tasks["1"].output.labels  # sentiment labels with scores
    spoken = _transcribe(client, view.tasks["2"].output.artifact("audio")).lower()
    assert "closed on sundays" in spoken
    assert view.tasks["0"].queue == "vision" and view.tasks["2"].queue == "audio"


def test_ocr_to_translation_to_speech_speaks_the_translation(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    from workers.text.apertium_experts import ApertiumEngSpa

    if ApertiumEngSpa.unavailable_reason():
        pytest.skip(ApertiumEngSpa.unavailable_reason() or "")
    uploads = client.uploads_for([EXAMPLES / "sign.png"])
    plan = parse_plan_json([
        {"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "sign.png"}},
        {"id": 1, "task": "translation", "dep": [0], "args": {"text": "<GENERATED>-0", "target": "Spanish"}},
        {"id": 2, "task": "text-to-speech", "dep": [1], "args": {"text": "<GENERATED>-1"}},
    ])
    text = "translate the sign into Spanish with the rule-based offline translator and read it aloud"
    view = wait_final(client, client.submit(RequestCreate(text=text, uploads=uploads, plan=plan)), timeout_s=180)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    assert view.tasks["1"].model == ApertiumEngSpa.model_id  # clearly ahead for these words: no select call
    assert fake_llm.calls("select") == []
    spanish = view.tasks["1"].output.text
    assert "domingos" in spanish.lower() and "Sundays" not in spanish
    assert view.tasks["2"].output.text == spanish  # the speech node was given the TRANSLATION ...
    # ... and says it: what whisper hears (an English voice reading Spanish) is closer to the Spanish text
    # than to the English one it was translated from.
    from difflib import SequenceMatcher

    spoken = " ".join(words(_transcribe(client, view.tasks["2"].output.artifact("audio"), language="es")))
    english = " ".join(words(view.tasks["0"].output.text))
    closeness = {name: SequenceMatcher(None, spoken, " ".join(words(text))).ratio()
                 for name, text in (("spanish", spanish), ("english", english))}
    assert closeness["spanish"] > closeness["english"] + 0.1, (spoken, closeness)


def test_a_language_pair_the_rule_based_translator_lacks_falls_back_to_the_next_model(client, fake_llm) -> None:  # type: ignore[no-untyped-def]
    from workers.text.apertium_experts import ApertiumEngSpa

    if ApertiumEngSpa.unavailable_reason():
        pytest.skip(ApertiumEngSpa.unavailable_reason() or "")
    fake_llm.script("task", "It is very hot today, let's go to the beach.")
    plan = parse_plan_json([{"id": 0, "task": "translation", "dep": [-1],
                             "args": {"text": "Hoje está muito calor, vamos à praia.", "target": "English"}}])
    view = wait_final(client, client.submit(RequestCreate(text="with the rule-based offline translator: what does it "
                                                               "mean in English?", plan=plan)), timeout_s=120)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    node = view.tasks["0"]
    assert node.model == "llm/translation" and "beach" in node.output.text
    tried = [(a.model, a.outcome) for a in node.model_attempts]
    assert tried[0] == (ApertiumEngSpa.model_id, "fallback") and "looks like Portuguese" in (node.model_attempts[0].error or "")


def test_an_empty_result_flows_on_as_a_result_not_a_failure(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from tests.media import png

    blank = tmp_path / "blank.png"
    blank.write_bytes(png(Image.new("RGB", (320, 200), "white")))  # an image with no text at all
    uploads = client.uploads_for([blank])
    plan = parse_plan_json([
        {"id": 0, "task": "image-to-text", "dep": [-1], "args": {"image": "blank.png"}},
        {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<GENERATED>-0"}},
        {"id": 2, "task": "text-to-speech", "dep": [1], "args": {"text": "<GENERATED>-1"}},
    ])
    view = wait_final(client, client.submit(RequestCreate(text="read and summarise", uploads=uploads, plan=plan)),
                      timeout_s=180)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    assert (view.tasks["0"].output.text or "").strip() == ""
    assert view.tasks["1"].output.text == "" and view.tasks["2"].output.text == ""
    assert view.tasks["2"].output.artifacts == []  # nothing was spoken: no silent file pretends otherwise
