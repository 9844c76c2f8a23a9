"""Audio experts, offline: faster-whisper (ASR, spoken language), piper (TTS), Silero VAD."""

from __future__ import annotations

import importlib.util
import io
import os
import wave
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.errors import ExpertError
from shared.model_files import PIPER_JOE, PIPER_JOE_VOICE, WHISPER_BASE, model_unavailable_reason, resolve_model_dir
from shared.outputs import ExpertResult, Label, MediaBlob
from workers.expert import Expert, InputValue, Media, register

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from piper import PiperVoice

SAMPLE_RATE = 16_000  # what whisper and Silero VAD take
_VAD_FRAME = 512  # samples per Silero VAD window at 16 kHz (32 ms)


def _threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _missing(*modules: str) -> str | None:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"python packages not installed: {', '.join(absent)}" if absent else None


@lru_cache(maxsize=1)
def whisper_model() -> WhisperModel:
    """One whisper base per process, shared by the ASR and audio-classification experts."""
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(resolve_model_dir(WHISPER_BASE)), device="cpu", compute_type="int8", cpu_threads=_threads()
    )


def _media(inputs: Mapping[str, InputValue], slot: str) -> Media:
    value = inputs.get(slot)
    if not isinstance(value, Media):
        raise ExpertError(f"input '{slot}' must be an audio file")
    if not value.data:
        raise ExpertError(f"input '{slot}' is empty")
    return value


def decode(media: Media) -> np.ndarray:
    """Any audio container/codec PyAV reads -> mono float32 at 16 kHz."""
    return decode_at(media, SAMPLE_RATE)


def decode_at(media: Media, rate: int) -> np.ndarray:
    """Any audio container/codec PyAV reads -> mono float32 at `rate` Hz."""
    from faster_whisper.audio import decode_audio

    try:
        audio = decode_audio(io.BytesIO(media.data), sampling_rate=rate)
    except Exception as exc:  # av.error.*, ValueError, IndexError (no audio stream)
        raise ExpertError(f"cannot decode audio ({media.mime}): {exc}") from exc
    if len(audio) == 0:
        raise ExpertError("the audio has no samples")
    return np.asarray(audio, dtype=np.float32)


def _text(inputs: Mapping[str, InputValue], slot: str = "text") -> str:
    value = inputs.get(slot)
    if not isinstance(value, str) or not value.strip():
        raise ExpertError(f"input '{slot}' must be a non-empty text")
    return value.strip()


# --- speech recognition --------------------------------------------------------------------


@register
class WhisperASR(Expert):
    model_id = "Systran/faster-whisper-base"
    task = "automatic-speech-recognition"
    pool = "audio"
    description = "Whisper base (CTranslate2 int8): multilingual speech to text"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _missing("faster_whisper", "ctranslate2", "av") or model_unavailable_reason(WHISPER_BASE)

    def _load(self) -> None:
        whisper_model()

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        audio = decode(_media(inputs, "audio"))
        language = params.get("language") or None
        segments, info = whisper_model().transcribe(audio, beam_size=5, language=language, vad_filter=True)
        text = " ".join(seg.text.strip() for seg in segments).strip()
        return ExpertResult(
            text=text,
            data={
                "language": info.language,
                "language_probability": round(float(info.language_probability), 4),
                "duration": round(float(info.duration), 3),
            },
        )


# --- text to speech --------------------------------------------------------------------------


@register
class PiperTTS(Expert):
    model_id = f"rhasspy/piper-voices:{PIPER_JOE_VOICE}"
    task = "text-to-speech"
    pool = "audio"
    description = "Piper VITS voice en_US joe (medium): English text to speech, 22.05 kHz WAV"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _missing("piper", "onnxruntime") or model_unavailable_reason(PIPER_JOE)

    def _load(self) -> None:
        from piper import PiperVoice

        directory = resolve_model_dir(PIPER_JOE)
        self._voice: PiperVoice = PiperVoice.load(
            directory / f"{PIPER_JOE_VOICE}.onnx", config_path=directory / f"{PIPER_JOE_VOICE}.onnx.json"
        )

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        from piper import SynthesisConfig

        text = _text(inputs)
        speed = float(params.get("speed", 1.0) or 1.0)
        if not 0.25 <= speed <= 4.0:
            raise ExpertError("speed must be between 0.25 and 4")
        self.ensure_loaded()
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wav:
            frames = 0
            for chunk in self._voice.synthesize(text, syn_config=SynthesisConfig(length_scale=1.0 / speed)):
                if frames == 0:
                    wav.setframerate(chunk.sample_rate)
                    wav.setsampwidth(chunk.sample_width)
                    wav.setnchannels(chunk.sample_channels)
                wav.writeframes(chunk.audio_int16_bytes)
                frames += len(chunk.audio_int16_bytes) // (chunk.sample_width * chunk.sample_channels)
            if frames == 0:
                raise ExpertError("nothing to say: the text has no pronounceable words")
            rate = wav.getframerate()
        return ExpertResult(
            text=text,
            media=[MediaBlob(data=buf.getvalue(), mime="audio/wav", kind="audio", name="speech.wav")],
            data={"seconds": round(frames / rate, 3), "sample_rate": rate, "voice": PIPER_JOE_VOICE},
        )


# --- speech / non-speech + spoken language ---------------------------------------------------


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero VAD speech probability of each 32 ms window."""
    from faster_whisper.vad import get_vad_model

    padded = np.pad(audio, (0, (-len(audio)) % _VAD_FRAME)) if len(audio) else np.zeros(_VAD_FRAME, np.float32)
    return np.asarray(get_vad_model()(padded), dtype=np.float32).reshape(-1)


@register
class SpeechLanguageClassifier(Expert):
    model_id = "snakers4/silero-vad"
    task = "audio-classification"
    pool = "audio"
    description = "speech / non-speech (Silero VAD) and spoken language (whisper language id)"

    min_speech_s: float = 0.25

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _missing("faster_whisper", "onnxruntime", "av") or model_unavailable_reason(WHISPER_BASE)

    def _load(self) -> None:
        from faster_whisper.vad import get_vad_model

        get_vad_model()
        whisper_model()

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        audio = decode(_media(inputs, "audio"))
        duration = len(audio) / SAMPLE_RATE
        probs = speech_probabilities(audio)
        opts = VadOptions(min_speech_duration_ms=int(self.min_speech_s * 1000), speech_pad_ms=0)
        chunks = get_speech_timestamps(audio, opts) if len(audio) else []
        speech_s = sum(c["end"] - c["start"] for c in chunks) / SAMPLE_RATE
        is_speech = speech_s >= self.min_speech_s
        if is_speech:
            idx = np.concatenate([np.arange(c["start"] // _VAD_FRAME, c["end"] // _VAD_FRAME + 1) for c in chunks])
            score = float(np.mean(probs[np.clip(idx, 0, len(probs) - 1)]))
        else:
            score = float(np.max(probs)) if len(probs) else 0.0
        labels = [Label(label="speech", score=round(score, 4)), Label(label="non-speech", score=round(1 - score, 4))]
        labels.sort(key=lambda lab: lab.score, reverse=True)
        data: dict[str, Any] = {
            "speech": is_speech,
            "speech_seconds": round(speech_s, 3),
            "duration": round(duration, 3),
        }
        text = "non-speech"
        if is_speech:
            voiced = np.concatenate([audio[c["start"] : c["end"]] for c in chunks])
            language, prob, ranked = whisper_model().detect_language(voiced)
            labels += [Label(label=f"language:{code}", score=round(float(p), 4)) for code, p in ranked[:3]]
            data |= {"language": language, "language_probability": round(float(prob), 4)}
            text = f"speech, language {language} ({prob:.2f})"
        return ExpertResult(text=text, labels=labels, data=data)
