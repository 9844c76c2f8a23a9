"""Vision experts on real inputs: Tesseract OCR on rendered text, Pillow image-to-image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.catalog import task_type
from shared.errors import ExpertError
from tests.media import shapes_image, text_image, words
from workers.expert import Media, expert_classes, get_expert
from workers.vision.experts import STYLES, PillowImageFilters, TesseractOCR

ocr_available = pytest.mark.skipif(TesseractOCR.unavailable_reason() is not None,
                                   reason=TesseractOCR.unavailable_reason() or "")


def _png(result_data: bytes) -> Image.Image:
    assert result_data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(result_data))
    img.load()
    return img


def test_vision_experts_serve_catalogued_vision_tasks() -> None:
    assert {TesseractOCR, PillowImageFilters} <= set(expert_classes("vision"))
    for cls in (TesseractOCR, PillowImageFilters):
        spec = task_type(cls.task)
        assert spec is not None and spec.pool == cls.pool == "vision"


@ocr_available
def test_ocr_reads_the_rendered_words() -> None:
    lines = ["Hello offline world", "Celery and Redis queue 2024"]
    result = get_expert(TesseractOCR.model_id).run({"image": text_image(lines)}, {})
    assert result.text is not None and result.text == result.text.strip()
    assert words(result.text) == words(" ".join(lines))


@ocr_available
def test_ocr_on_a_blank_image_is_empty_and_bad_bytes_are_rejected() -> None:
    expert = get_expert(TesseractOCR.model_id)
    blank = io.BytesIO()
    Image.new("RGB", (200, 100), "white").save(blank, format="PNG")
    assert expert.run({"image": Media(blank.getvalue(), "image/png")}, {}).text == ""
    with pytest.raises(ExpertError, match="cannot decode image"):
        expert.run({"image": Media(b"not an image at all", "image/png")}, {})
    with pytest.raises(ExpertError, match="must be an image"):
        expert.run({"image": "a string"}, {})
    with pytest.raises(ExpertError, match="not installed"):
        expert.run({"image": text_image(["x"])}, {"lang": "klingon"})


@pytest.mark.parametrize("style", sorted(STYLES))
def test_image_to_image_returns_a_png_of_the_same_size(style: str) -> None:
    media, original = shapes_image()
    result = get_expert(PillowImageFilters.model_id).run({"image": media}, {"style": style})
    assert len(result.media) == 1
    blob = result.media[0]
    assert (blob.kind, blob.mime) == ("image", "image/png")
    out = _png(blob.data)
    assert out.size == original.size
    assert result.data["style"] == style
    if style != "gray":  # every style visibly changes the picture
        diff = np.abs(np.asarray(out.convert("RGB"), dtype=int) - np.asarray(original, dtype=int))
        assert diff.max() > 40


def test_gray_is_the_default_and_is_grayscale() -> None:
    media, original = shapes_image(fmt="PNG")
    result = get_expert(PillowImageFilters.model_id).run({"image": media}, {})
    out = _png(result.media[0].data)
    assert out.mode == "L"
    assert np.array_equal(np.asarray(out), np.asarray(original.convert("L")))


def test_canny_finds_the_shape_outlines() -> None:
    media, _ = shapes_image(fmt="PNG")
    out = np.asarray(_png(get_expert(PillowImageFilters.model_id).run({"image": media}, {"style": "canny"})
                          .media[0].data).convert("L"))
    edges = out > 127
    assert 0.005 < edges.mean() < 0.1  # thin lines, not a filled image
    assert edges[95:106, 35:46].any()  # left edge of the circle (x=40, y=100)
    assert not edges[110:130, 220:250].any()  # inside the flat green square


def test_style_from_instruction_and_aliases_and_unknown_style() -> None:
    expert = get_expert(PillowImageFilters.model_id)
    media, _ = shapes_image()
    assert expert.run({"image": media, "text": "turn it into a pencil drawing"}, {}).data["style"] == "sketch"
    assert expert.run({"image": media}, {"style": "Edges"}).data["style"] == "canny"
    with pytest.raises(ExpertError, match="unknown style"):
        expert.run({"image": media}, {"style": "van-gogh"})
