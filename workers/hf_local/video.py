"""Frames -> a playable video file with PyAV (FFmpeg), in the first codec this FFmpeg build has:
H.264 in MP4 (every browser), else VP9/VP8 in WebM, else MPEG-4 Part 2 in MP4."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

# (FFmpeg encoder, container, MIME type)
CODECS = (("libx264", "mp4", "video/mp4"), ("libopenh264", "mp4", "video/mp4"), ("libvpx-vp9", "webm", "video/webm"),
          ("libvpx", "webm", "video/webm"), ("mpeg4", "mp4", "video/mp4"))


def available_codec() -> tuple[str, str, str]:
    import av

    for codec in CODECS:
        try:
            av.codec.Codec(codec[0], "w")
        except Exception:  # noqa: BLE001 - av raises UnknownCodecError (or ValueError) for a missing encoder
            continue
        return codec
    raise RuntimeError("this FFmpeg (PyAV) build has no video encoder hgq knows")


def _rgb(frame: Any) -> Any:
    """A PIL image, or an HxWx3 array in 0..1 (float) or 0..255 (uint8), as a uint8 array."""
    import numpy as np

    arr = np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr[:, :, :3]


def encode_video(frames: Sequence[Any], fps: int) -> tuple[bytes, str, str]:
    """(file bytes, MIME type, extension). Odd sizes are padded by one pixel (yuv420p needs even)."""
    import av
    import numpy as np

    if not frames:
        raise ValueError("no frames to encode")
    codec, container, mime = available_codec()
    images = [_rgb(f) for f in frames]
    height, width = images[0].shape[:2]
    even_h, even_w = height + height % 2, width + width % 2
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream: Any = out.add_stream(codec, rate=fps)  # a VideoStream (av types it as any stream kind)
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        for img in images:
            padded = np.zeros((even_h, even_w, 3), np.uint8)
            padded[:height, :width] = img[:even_h, :even_w]
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue(), mime, container
