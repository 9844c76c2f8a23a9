"""Vision experts, offline: Tesseract OCR (image-to-text) and Pillow filters (image-to-image)."""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from shared.errors import ExpertError, ModelUnavailable
from shared.outputs import ExpertResult, MediaBlob
from workers.expert import Expert, InputValue, Media, register

MAX_PIXELS = 40_000_000
HYSTERESIS_STEPS = 64


def load_image(inputs: Mapping[str, InputValue], slot: str = "image") -> Image.Image:
    """Decode an image input (any format Pillow reads), upright per EXIF."""
    value = inputs.get(slot)
    if not isinstance(value, Media) or not value.data:
        raise ExpertError(f"input '{slot}' must be an image file")
    try:
        with Image.open(io.BytesIO(value.data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ExpertError(f"image too large ({img.width}x{img.height})")
            img.load()
            return ImageOps.exif_transpose(img) or img
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ExpertError(f"cannot decode image ({value.mime}): {exc}") from exc


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# --- OCR ----------------------------------------------------------------------------------------


@register
class TesseractOCR(Expert):
    model_id = "tesseract-ocr/tesseract-eng"
    task = "image-to-text"
    pool = "vision"
    description = "Tesseract 5 LSTM OCR (English): reads the printed text in an image"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("pytesseract") is None:
            return "python package pytesseract not installed (pip install pytesseract==0.3.13)"
        if shutil.which("tesseract") is None:
            return "tesseract binary not found (apt-get install tesseract-ocr tesseract-ocr-eng)"
        return None

    def _load(self) -> None:
        import pytesseract

        try:
            langs = set(pytesseract.get_languages(config=""))
        except (pytesseract.TesseractError, OSError) as exc:
            raise ModelUnavailable(f"tesseract does not run: {exc}") from exc
        if "eng" not in langs:
            raise ModelUnavailable("tesseract has no English data (apt-get install tesseract-ocr-eng)")
        self._langs = langs

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        import pytesseract

        self.ensure_loaded()
        img = load_image(inputs)
        lang = str(params.get("lang") or "eng")
        if any(part not in self._langs for part in lang.split("+")):
            raise ExpertError(f"OCR language '{lang}' not installed (have: {', '.join(sorted(self._langs))})")
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        try:
            raw = pytesseract.image_to_string(img, lang=lang, timeout=60)
        except RuntimeError as exc:  # pytesseract's timeout
            raise ExpertError(f"OCR timed out: {exc}") from exc
        except pytesseract.TesseractError as exc:
            raise ExpertError(f"OCR failed: {exc}") from exc
        text = "\n".join(line.strip() for line in raw.splitlines() if line.strip())
        return ExpertResult(text=text, data={"lang": lang, "width": img.width, "height": img.height})


# --- image-to-image (non-neural) -----------------------------------------------------------------


def _shift_max(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation."""
    padded = np.pad(mask, 1)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def canny(img: Image.Image, low: float = 0.1, high: float = 0.25) -> Image.Image:
    """Canny edges (Gaussian blur, Sobel, non-maximum suppression, hysteresis): white on black."""
    g = np.asarray(img.convert("L").filter(ImageFilter.GaussianBlur(1.4)), dtype=np.float32)
    p = np.pad(g, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag = np.hypot(gx, gy)
    peak = float(mag.max())
    if peak <= 0:
        return Image.new("L", img.size, 0)
    mag /= peak
    # non-maximum suppression along the quantised gradient direction
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    m = np.pad(mag, 1)
    h, w = mag.shape
    # (rows grow downwards, so a 45-degree gradient points down-right)
    neighbours = {0: ((0, 1), (0, -1)), 45: ((1, 1), (-1, -1)), 90: ((1, 0), (-1, 0)), 135: ((1, -1), (-1, 1))}
    sector = (np.round(angle / 45.0).astype(int) % 4) * 45
    keep = np.zeros_like(mag, dtype=bool)
    for deg, ((ay, ax), (by, bx)) in neighbours.items():
        a = m[1 + ay : 1 + ay + h, 1 + ax : 1 + ax + w]
        b = m[1 + by : 1 + by + h, 1 + bx : 1 + bx + w]
        keep |= (sector == deg) & (mag >= a) & (mag >= b)
    thin = np.where(keep, mag, 0.0)
    strong, weak = thin >= high, thin >= low
    for _ in range(HYSTERESIS_STEPS):  # hysteresis: grow strong edges through weak ones (bounded)
        grown = _shift_max(strong) & weak
        if np.array_equal(grown, strong):
            break
        strong = grown
    return Image.fromarray((strong * 255).astype(np.uint8), mode="L")


def sketch(img: Image.Image) -> Image.Image:
    """Pencil sketch: colour-dodge the grayscale with its blurred negative."""
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    blurred = np.asarray(ImageOps.invert(img.convert("L")).filter(ImageFilter.GaussianBlur(8)), dtype=np.float32)
    dodge = np.clip(gray * 255.0 / np.maximum(255.0 - blurred, 1.0), 0, 255)
    return Image.fromarray(dodge.astype(np.uint8), mode="L")


def stylize(img: Image.Image) -> Image.Image:
    """Cartoon-like: smoothed, posterised colours with dark edges."""
    rgb = img.convert("RGB")
    smooth = rgb.filter(ImageFilter.MedianFilter(5)).filter(ImageFilter.SMOOTH_MORE)
    poster = ImageOps.posterize(smooth, 3)
    edges = canny(rgb, 0.08, 0.2).filter(ImageFilter.MaxFilter(3))
    return Image.composite(Image.new("RGB", rgb.size, (20, 20, 20)), poster, edges)


def sepia(img: Image.Image) -> Image.Image:
    return ImageOps.colorize(ImageOps.autocontrast(img.convert("L")), (40, 26, 13), (255, 240, 192))


STYLES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "gray": lambda im: im.convert("L"),
    "canny": canny,
    "sketch": sketch,
    "stylize": stylize,
    "sepia": sepia,
    "invert": lambda im: ImageOps.invert(im.convert("RGB")),
    "blur": lambda im: im.convert("RGB").filter(ImageFilter.GaussianBlur(4)),
    "sharpen": lambda im: im.convert("RGB").filter(ImageFilter.UnsharpMask(2, 150, 3)),
}
ALIASES = {
    "grey": "gray", "grayscale": "gray", "greyscale": "gray", "black and white": "gray", "edges": "canny",
    "edge": "canny", "outline": "canny", "pencil": "sketch", "drawing": "sketch", "cartoon": "stylize",
    "stylise": "stylize", "painting": "stylize", "negative": "invert", "vintage": "sepia",
}


def pick_style(param: object, instruction: object, styles: Mapping[str, object] = STYLES,
               aliases: Mapping[str, str] = ALIASES, default: str = "gray") -> str:
    """The style from the `style` param, else a style word in the optional text instruction."""
    if param:
        name = str(param).strip().lower()
        name = aliases.get(name, name)
        if name not in styles:
            raise ExpertError(f"unknown style '{param}'; one of: {', '.join(styles)}")
        return name
    if isinstance(instruction, str):
        words = instruction.lower()
        for word in sorted([*styles, *aliases], key=len, reverse=True):
            if re.search(rf"\b{re.escape(word)}\b", words):
                return aliases.get(word, word)
    return default


@register
class PillowImageFilters(Expert):
    model_id = "hgq/pillow-image-filters"
    task = "image-to-image"
    pool = "vision"
    description = "non-neural transforms with Pillow: gray, canny edges, pencil sketch, stylize, sepia, invert"
    param_choices = {"style": frozenset([*STYLES, *ALIASES])}

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        img = load_image(inputs)
        style = pick_style(params.get("style"), inputs.get("text"))
        out = STYLES[style](img)
        return ExpertResult(
            text=f"{style} version of the image",
            media=[MediaBlob(data=png_bytes(out), mime="image/png", kind="image", name=f"{style}.png")],
            data={"style": style, "width": out.width, "height": out.height},
        )
