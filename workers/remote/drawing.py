"""Pictures of remote results: boxes drawn on the image, segment masks laid over it (Pillow)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from shared.outputs import Box

COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def _open(data: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def draw_boxes(image_bytes: bytes, boxes: Sequence[Box]) -> bytes:
    from PIL import ImageDraw

    image = _open(image_bytes)
    draw = ImageDraw.Draw(image)
    for i, box in enumerate(boxes):
        color = COLORS[i % len(COLORS)]
        draw.rectangle([box.x, box.y, box.x + box.width, box.y + box.height], outline=color, width=2)
        draw.text((box.x + 2, box.y + 1), f"{box.label} {box.score:.2f}", fill=color)
    return _png(image)


def overlay_masks(image_bytes: bytes, masks: Sequence[Any]) -> bytes:
    """Each mask (a PIL image, white = inside) tinted in its colour over the image."""
    from PIL import Image

    image = _open(image_bytes)
    for i, mask in enumerate(masks):
        if mask is None:
            continue
        alpha = mask.convert("L").resize(image.size).point(lambda v: v // 2)
        image.paste(Image.new("RGB", image.size, COLORS[i % len(COLORS)]), (0, 0), alpha)
    return _png(image)


def mask_and_cutout(image_bytes: bytes, masks: Sequence[Any]) -> tuple[bytes, bytes, float]:
    """The union of the masks (white = inside), the image cut out by it (transparent outside), and
    the share of the image it covers."""
    from PIL import Image, ImageChops

    image = _open(image_bytes)
    union = Image.new("L", image.size, 0)
    for mask in masks:
        if mask is not None:
            union = ImageChops.lighter(union, mask.convert("L").resize(image.size))
    cutout = image.convert("RGBA")
    cutout.putalpha(union)
    histogram = union.point(lambda v: 255 if v >= 128 else 0).histogram()
    share = histogram[255] / max(1, image.width * image.height)
    return _png(union), _png(cutout), share


def segment_map(image_bytes: bytes, segments: Sequence[Any]) -> bytes:
    """A seg control map: each segment filled on black with a colour fixed per label (the same class has
    the same colour in every map; it is not the ADE20K palette lllyasviel/sd-controlnet-seg learnt)."""
    import hashlib

    from PIL import Image

    size = _open(image_bytes).size
    canvas = Image.new("RGB", size, (0, 0, 0))
    for seg in segments:
        if seg.mask is None:
            continue
        digest = hashlib.sha256(str(seg.label).encode()).digest()
        canvas.paste(Image.new("RGB", size, (digest[0], digest[1], digest[2])), (0, 0),
                     seg.mask.convert("L").resize(size).point(lambda v: 255 if v >= 128 else 0))
    return _png(canvas)
