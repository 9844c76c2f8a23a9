"""Make real test inputs offline: rendered text images, shapes, synthesized speech, noise."""

from __future__ import annotations

import io
import re
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from workers.expert import Media

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",  # Debian fonts-dejavu-core
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


def font(size: int = 40) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A TrueType font from the system, else Pillow's built-in font scaled to `size`."""
    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def text_image(lines: list[str], size: int = 40, margin: int = 30) -> Media:
    """Black text on white, one line per entry, as a PNG."""
    f = font(size)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [probe.textbbox((0, 0), line, font=f) for line in lines]
    line_h = int(max(b[3] for b in boxes)) + size // 2
    width = int(max(b[2] for b in boxes)) + 2 * margin
    img = Image.new("RGB", (width, line_h * len(lines) + 2 * margin), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_h), line, font=f, fill="black")
    return Media(data=png(img), mime="image/png", name="text.png")


def shapes_image(width: int = 320, height: int = 240, fmt: str = "JPEG") -> tuple[Media, Image.Image]:
    """A flat-coloured scene (circle, square, triangle) and the exact image drawn."""
    img = Image.new("RGB", (width, height), (200, 220, 255))
    draw = ImageDraw.Draw(img)
    draw.ellipse((40, 40, 160, 160), fill=(220, 60, 40))
    draw.rectangle((180, 80, 290, 200), fill=(40, 140, 60))
    draw.polygon([(60, 230), (150, 180), (250, 230)], fill=(90, 90, 200))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return Media(data=buf.getvalue(), mime=f"image/{fmt.lower()}", name=f"shapes.{fmt.lower()}"), img


def wav_bytes(samples: np.ndarray, sample_rate: int = 16_000) -> bytes:
    """Mono float samples in -1..1 -> 16-bit PCM WAV."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buf.getvalue()


def silence(seconds: float = 3.0, sample_rate: int = 16_000) -> Media:
    return Media(data=wav_bytes(np.zeros(int(seconds * sample_rate))), mime="audio/wav", name="silence.wav")


def noise(seconds: float = 3.0, level: float = 0.3, seed: int = 0, sample_rate: int = 16_000) -> Media:
    samples = np.random.default_rng(seed).normal(0.0, level, int(seconds * sample_rate))
    return Media(data=wav_bytes(samples), mime="audio/wav", name="noise.wav")


@lru_cache(maxsize=8)
def speech(text: str) -> Media:
    """Speech synthesized by the piper expert (real TTS, offline)."""
    from workers.audio.experts import PiperTTS
    from workers.expert import get_expert

    result = get_expert(PiperTTS.model_id).run({"text": text}, {})
    blob = result.media[0]
    return Media(data=blob.data, mime=blob.mime, name="speech.wav")


def transcode(media: Media, fmt: str = "flac", codec: str = "flac") -> Media:
    """Re-encode audio with PyAV (as a user's non-WAV upload would be)."""
    import av

    from workers.audio.experts import decode

    samples = decode(media)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").reshape(1, -1)
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=16_000)
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 16_000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return Media(data=out.getvalue(), mime=f"audio/{fmt}", name=f"speech.{fmt}")


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped (hyphens split words)."""
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def words_match(expected: str, got: str, allowed_off: int = 1) -> bool:
    """True when at most `allowed_off` expected words are missing from `got`."""
    have = set(words(got))
    missing = [w for w in words(expected) if w not in have]
    return len(missing) <= allowed_off
