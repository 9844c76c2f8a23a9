"""Object detection offline, limited to what exists here: faces and people (MediaPipe 0.10.14).

No general (COCO) detector runs offline, so this expert says plainly that it finds only faces
and people. People come from MediaPipe Pose (BlazePose detector + GHUM landmarks + person
mask), which sees one person per pass: after each find the person is painted out and the
image is searched again. A person after the first counts only when a face is found in the
upper part of their box (painting out can make the detector see bodies in leftovers). Faces come
from MediaPipe's full-range face detector, run on the whole image and on each person's upper
body (a small face in a large photo is missed at the detector's 192x192 input otherwise).

`PeopleFinder` is shared with the segmentation and pose-map experts (one per process).
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from shared.errors import ExpertError, ModelUnavailable
from shared.outputs import Box, ExpertResult, MediaBlob
from workers.expert import Expert, InputValue, register
from workers.vision.experts import load_image, png_bytes

# mediapipe 0.10.14 calls a protobuf API that warns on every image
warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated", category=UserWarning)

MAX_SIDE = 1600  # images are searched at most this large (boxes are scaled back)
MAX_PEOPLE = 5
FACE_MIN_SCORE = 0.5
PERSON_MIN_SCORE = 0.5  # MediaPipe Pose's detection confidence
LANDMARK_VISIBLE = 0.5
FILL = 128  # grey that paints out a found person before the next pass

# mediapipe 0.10.14 ships these graph files; others (pose "lite"/"heavy") would be downloaded
MEDIAPIPE_FILES = (
    "modules/pose_landmark/pose_landmark_full.tflite",
    "modules/pose_detection/pose_detection.tflite",
    "modules/face_detection/face_detection_full_range_sparse.tflite",
)


def mediapipe_unavailable_reason() -> str | None:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return "python package mediapipe not installed (pip install --no-deps mediapipe==0.10.14)"
    from pathlib import Path

    root = Path(next(iter(spec.submodule_search_locations)))
    missing = [f for f in MEDIAPIPE_FILES if not (root / f).is_file()]
    if missing:
        return f"mediapipe ships no {', '.join(missing)} (mediapipe==0.10.14 does; later versions download them)"
    return None


@dataclass
class Person:
    box: tuple[int, int, int, int]  # x, y, width, height in image pixels
    score: float  # mean visibility of the pose landmarks inside the image
    mask: np.ndarray  # float32 HxW in 0..1, this person only
    landmarks: list[tuple[float, float, float]]  # 33 MediaPipe landmarks: x, y (pixels), visibility


@dataclass
class Found:
    people: list[Person]
    faces: list[tuple[tuple[int, int, int, int], float]]  # box, score
    width: int
    height: int


def _rgb_array(img: Image.Image) -> tuple[np.ndarray, float]:
    """Contiguous uint8 RGB, downscaled to MAX_SIDE; and the factor back to the original."""
    rgb = img.convert("RGB")
    scale = min(1.0, MAX_SIDE / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), 1.0 / scale


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0, min(ax2, bx2) - max(ax1, bx1)), max(0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _clip_box(x0: float, y0: float, x1: float, y1: float, w: int, h: int) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
    x1, y1 = min(w, int(round(x1))), min(h, int(round(y1)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


class PeopleFinder:
    """MediaPipe Pose + face detection, loaded once; `find` is serialised (graphs are not thread-safe)."""

    def __init__(self) -> None:
        reason = mediapipe_unavailable_reason()
        if reason:
            raise ModelUnavailable(reason)
        import mediapipe as mp

        try:
            self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                                                min_detection_confidence=PERSON_MIN_SCORE)
            self._faces = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                    min_detection_confidence=FACE_MIN_SCORE)
        except Exception as exc:  # noqa: BLE001 - a graph that cannot start (missing model file, bad build)
            raise ModelUnavailable(f"mediapipe cannot start its pose / face graphs: {exc}") from exc
        self._lock = threading.Lock()

    def _detect_faces(self, rgb: np.ndarray, offset: tuple[int, int] = (0, 0),
                      full: tuple[int, int] | None = None) -> list[tuple[tuple[int, int, int, int], float]]:
        h, w = rgb.shape[:2]
        fw, fh = full or (w, h)
        out = []
        for det in self._faces.process(rgb).detections or []:
            rel = det.location_data.relative_bounding_box
            box = _clip_box(offset[0] + rel.xmin * w, offset[1] + rel.ymin * h,
                            offset[0] + (rel.xmin + rel.width) * w, offset[1] + (rel.ymin + rel.height) * h, fw, fh)
            if box is not None:
                out.append((box, float(det.score[0])))
        return out

    def _faces_in_upper_body(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> list[tuple[tuple[int, int, int, int], float]]:
        h, w = rgb.shape[:2]
        x, y, bw, bh = box
        side = max(bw, min(bh, int(bw * 1.5)), 32)  # a square-ish crop of the head and shoulders
        cx = x + bw / 2
        x0, y0 = int(max(0, cx - side / 2 - 0.1 * side)), int(max(0, y - 0.1 * side))
        x1, y1 = int(min(w, cx + side / 2 + 0.1 * side)), int(min(h, y + side))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return []
        return self._detect_faces(np.ascontiguousarray(rgb[y0:y1, x0:x1]), (x0, y0), (w, h))

    def _one_person(self, work: np.ndarray) -> Person | None:
        h, w = work.shape[:2]
        result = self._pose.process(work)
        if result.pose_landmarks is None:
            return None
        marks = [(p.x * w, p.y * h, float(p.visibility)) for p in result.pose_landmarks.landmark]
        inside = [m for m in marks if 0 <= m[0] < w and 0 <= m[1] < h]
        mask = result.segmentation_mask
        mask = np.zeros((h, w), np.float32) if mask is None else np.clip(mask, 0.0, 1.0).astype(np.float32)
        ys, xs = np.nonzero(mask > 0.5)
        seen = [m for m in inside if m[2] >= LANDMARK_VISIBLE]
        if xs.size:
            x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        elif seen:
            x0, y0 = min(m[0] for m in seen), min(m[1] for m in seen)
            x1, y1 = max(m[0] for m in seen) + 1, max(m[1] for m in seen) + 1
        else:
            return None
        for mx, my, _ in seen:  # a visible hand or head outside the mask still belongs to the box
            x0, y0, x1, y1 = min(x0, mx), min(y0, my), max(x1, mx + 1), max(y1, my + 1)
        box = _clip_box(x0, y0, x1, y1, w, h)
        if box is None:
            return None
        score = float(np.mean([m[2] for m in inside])) if inside else 0.0
        return Person(box=box, score=round(score, 4), mask=mask, landmarks=marks)

    def find(self, img: Image.Image, max_people: int = MAX_PEOPLE, faces: bool = True) -> Found:
        rgb, back = _rgb_array(img)
        h, w = rgb.shape[:2]
        people: list[Person] = []
        found_faces: list[tuple[tuple[int, int, int, int], float]] = []
        with self._lock:
            if faces:
                found_faces = self._detect_faces(rgb)
            work = rgb.copy()
            for k in range(max_people):
                person = self._one_person(work)
                if person is None or any(_iou(person.box, p.box) > 0.5 for p in people):
                    break
                x, y, bw, bh = person.box
                work[person.mask > 0.5] = FILL
                work[y : y + bh, x : x + bw] = FILL
                head_faces = self._faces_in_upper_body(rgb, person.box) if faces or k > 0 else []
                if k > 0 and not head_faces:  # no face where this body's head should be: not trusted
                    break
                people.append(person)
                found_faces.extend(head_faces)
        merged: list[tuple[tuple[int, int, int, int], float]] = []
        for box, score in sorted(found_faces, key=lambda f: -f[1]):  # the full image and the crops overlap
            if all(_iou(box, kept) <= 0.3 for kept, _ in merged):
                merged.append((box, score))
        if back != 1.0:
            people = [_rescale(p, back, img.size) for p in people]
            merged = [(_scale_box(b, back, img.size), s) for b, s in merged]
        return Found(people=people, faces=merged if faces else [], width=img.width, height=img.height)


def _scale_box(box: Sequence[int], k: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    x, y, bw, bh = box
    return _clip_box(x * k, y * k, (x + bw) * k, (y + bh) * k, *size) or (0, 0, 1, 1)


def _rescale(p: Person, k: float, size: tuple[int, int]) -> Person:
    mask = np.asarray(Image.fromarray(p.mask).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    return Person(box=_scale_box(p.box, k, size), score=p.score, mask=mask,
                  landmarks=[(x * k, y * k, v) for x, y, v in p.landmarks])


_FINDER: PeopleFinder | None = None
_FINDER_LOCK = threading.Lock()


def people_finder() -> PeopleFinder:
    """The process's one PeopleFinder (created on first use)."""
    global _FINDER
    with _FINDER_LOCK:
        if _FINDER is None:
            _FINDER = PeopleFinder()
        return _FINDER


# --- the expert --------------------------------------------------------------------------------

SYNONYMS = {
    "face": "face", "faces": "face", "head": "face", "heads": "face",
    **dict.fromkeys(("person", "persons", "people", "human", "humans", "man", "men", "woman", "women", "child", "children", "kid", "kids", "boy", "boys", "girl", "girls", "pedestrian", "pedestrians", "body", "bodies", "astronaut"), "person"),
}
COLOURS = {"person": (0, 170, 255), "face": (255, 60, 60)}


def parse_labels(param: object) -> tuple[set[str], list[str]]:
    """(wanted labels among face/person, names asked for that this model cannot find)."""
    if param is None or param == "":
        return {"face", "person"}, []
    items = param if isinstance(param, list | tuple) else str(param).replace(";", ",").split(",")
    wanted, unknown = set(), []
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if name in SYNONYMS:
            wanted.add(SYNONYMS[name])
        else:
            unknown.append(name)
    if not wanted and unknown:
        raise ExpertError(f"this detector finds only faces and people, not: {', '.join(unknown)}")
    return wanted or {"face", "person"}, unknown


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def annotate(img: Image.Image, boxes: list[Box]) -> Image.Image:
    out = img.convert("RGB")
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 200))
    font = ImageFont.load_default(size=max(12, round(min(out.size) / 30)))
    for box in sorted(boxes, key=lambda b: b.label != "person"):  # faces drawn over people
        colour = COLOURS.get(box.label, (255, 255, 0))
        x1, y1 = box.x + box.width - 1, box.y + box.height - 1
        draw.rectangle((box.x, box.y, x1, y1), outline=colour, width=width)
        caption = f"{box.label} {box.score:.2f}"
        tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), caption, font=font)
        ty = box.y - (ty1 - ty0) - 2 * width if box.y >= (ty1 - ty0) + 2 * width else box.y + width
        draw.rectangle((box.x, ty, box.x + tx1 - tx0 + 2 * width, ty + ty1 - ty0 + 2 * width), fill=colour)
        draw.text((box.x + width - tx0, ty + width - ty0), caption, font=font, fill=(0, 0, 0))
    return out


class PeopleExpert(Expert):
    """Base of the experts built on the process's one PeopleFinder (MediaPipe pose + face detection)."""

    pool = "vision"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return mediapipe_unavailable_reason()

    def _load(self) -> None:
        self._finder = people_finder()


@register
class FacePersonDetector(PeopleExpert):
    model_id = "google/mediapipe-face-person-detection"
    task = "object-detection"
    description = ("MediaPipe face detection and BlazePose person detection (CPU): finds ONLY faces and people "
                   "(no other objects), returns their boxes with scores and draws them on the image")

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        wanted, unknown = parse_labels(params.get("labels"))
        img = load_image(inputs)
        self.ensure_loaded()
        found = self._finder.find(img, max_people=MAX_PEOPLE if "person" in wanted else 1,
                                  faces="face" in wanted)
        boxes: list[Box] = []
        if "person" in wanted:
            boxes += [Box(label="person", score=p.score, x=p.box[0], y=p.box[1], width=p.box[2], height=p.box[3])
                      for p in found.people]
        boxes += [Box(label="face", score=round(s, 4), x=b[0], y=b[1], width=b[2], height=b[3])
                  for b, s in found.faces]
        n_people = sum(b.label == "person" for b in boxes)
        n_faces = sum(b.label == "face" for b in boxes)
        parts = []
        if "person" in wanted:
            parts.append(_count(n_people, "person", "people"))
        if "face" in wanted:
            parts.append(_count(n_faces, "face", "faces"))
        if not boxes:
            text = "no " + " or ".join("people" if w == "person" else "faces" for w in sorted(wanted, reverse=True)) \
                + " found"
        else:
            text = ", ".join(parts)
        if unknown:
            text += f" (this detector cannot find: {', '.join(unknown)})"
        return ExpertResult(
            text=text,
            boxes=boxes,
            media=[MediaBlob(data=png_bytes(annotate(img, boxes)), mime="image/png", kind="image",
                             name="detections.png")],
            data={"people": n_people, "faces": n_faces, "width": img.width, "height": img.height,
                  "labels": sorted(wanted), "unsupported_labels": unknown},
        )
