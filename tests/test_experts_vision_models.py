"""Vision experts on real models and real photos (scikit-image's bundled pictures), no mocks.

MobileNetV2 (torch), MediaPipe face / pose / person mask, U^2-Net small (onnxruntime) and OpenCV.
Models load once per module (module-scoped fixtures); the end-to-end test runs the cat photo
through real Celery workers.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.catalog import task_type
from shared.errors import ExpertError
from shared.outputs import Box, ExpertResult
from tests.helpers import needs
from tests.media import silence
from workers.expert import Expert, Media, expert_classes, get_expert
from workers.pools import POOL_MODULES
from workers.vision.classification_experts import (
    MOBILENET_V2,
    WEIGHTS_FILE,
    WEIGHTS_SHA256,
    MobileNetV2Classifier,
    build_mobilenet_v2,
    imagenet_classes,
)
from workers.vision.detection_experts import FacePersonDetector, parse_labels
from workers.vision.segmentation_experts import (
    CV_STYLES,
    OpenCVFilters,
    PersonSegmentation,
    PoseMap,
    SalientObjectSegmentation,
)

skimage_data = pytest.importorskip("skimage.data")
# mediapipe 0.10.14 warns on every image (detection_experts filters it; pytest resets filters per test)
pytestmark = pytest.mark.filterwarnings("ignore:SymbolDatabase.GetPrototype:UserWarning")

MODEL_EXPERTS: tuple[type[Expert], ...] = (MobileNetV2Classifier, FacePersonDetector, PersonSegmentation,
                                           SalientObjectSegmentation, PoseMap)
ALL_EXPERTS = (*MODEL_EXPERTS, OpenCVFilters)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"




def _media(arr: np.ndarray, name: str) -> Media:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return Media(data=buf.getvalue(), mime="image/png", name=name)


def _png(data: bytes) -> Image.Image:
    assert data[:8] == PNG_MAGIC
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _inside(box: Box, width: int, height: int) -> bool:
    return box.x >= 0 and box.y >= 0 and box.width > 0 and box.height > 0 \
        and box.x + box.width <= width and box.y + box.height <= height


@pytest.fixture(scope="module")
def photos() -> dict[str, Media]:
    """The cat (451x300), the espresso (600x400), the astronaut portrait (512x512), a flat grey image."""
    return {
        "cat": _media(skimage_data.chelsea(), "cat.png"),
        "coffee": _media(skimage_data.coffee(), "coffee.png"),
        "astronaut": _media(skimage_data.astronaut(), "astronaut.png"),
        "blank": _media(np.full((300, 400, 3), 128, np.uint8), "blank.png"),
    }


@pytest.fixture(scope="module")
def loaded():  # type: ignore[no-untyped-def]
    """The process-wide expert instances, loaded once for the module."""
    def get(cls: type[Expert]) -> Expert:
        reason = cls.unavailable_reason()
        if reason:
            pytest.skip(reason)
        expert = get_expert(cls.model_id)
        expert.ensure_loaded()
        return expert
    return get


@pytest.fixture(scope="module")
def astronaut_detection(loaded, photos) -> ExpertResult:  # type: ignore[no-untyped-def]
    return loaded(FacePersonDetector).run({"image": photos["astronaut"]}, {})


# --- registration, files ---------------------------------------------------------------------------


def test_experts_are_registered_for_catalogued_vision_tasks() -> None:
    assert set(ALL_EXPERTS) <= set(expert_classes("vision"))
    assert len({cls.model_id for cls in ALL_EXPERTS}) == len(ALL_EXPERTS)
    for cls in ALL_EXPERTS:
        spec = task_type(cls.task)
        assert spec is not None and spec.pool == cls.pool == "vision", cls.model_id
        assert cls.description
        assert cls.__module__ in POOL_MODULES["vision"]
    assert "faces and people" in FacePersonDetector.description.replace("ONLY ", "")
    assert "pose" in (task_type("image-to-image").params["style"])  # type: ignore[union-attr]


def test_imagenet_class_names() -> None:
    names = imagenet_classes()
    assert len(names) == 1000
    assert (names[0], names[281], names[285], names[967], names[999]) == \
        ("tench", "tabby", "Egyptian cat", "espresso", "toilet tissue")


@needs(MobileNetV2Classifier)
def test_mobilenet_weights_resolve_to_the_verified_file() -> None:
    from shared.model_files import resolve_model_dir

    path = resolve_model_dir(MOBILENET_V2) / WEIGHTS_FILE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == WEIGHTS_SHA256
    import torch

    keys = set(torch.load(path, map_location="cpu", weights_only=True))
    assert keys == set(build_mobilenet_v2().state_dict())  # torchvision's names, one for one


# --- image classification ------------------------------------------------------------------------------


@pytest.mark.slow
def test_classifier_names_the_cat(loaded, photos) -> None:  # type: ignore[no-untyped-def]
    result = loaded(MobileNetV2Classifier).run({"image": photos["cat"]}, {})
    assert len(result.labels) == 5
    top = result.labels[0]
    assert top.label in {"tabby", "tiger cat", "Egyptian cat"}, result.text
    assert 0.3 < top.score <= 1.0
    scores = [lab.score for lab in result.labels]
    assert scores == sorted(scores, reverse=True) and sum(scores) <= 1.0001
    assert result.text and result.text.startswith(f"{top.label} ({top.score:.2f})")


@pytest.mark.slow
def test_classifier_names_the_espresso_and_honours_top_k(loaded, photos) -> None:  # type: ignore[no-untyped-def]
    expert = loaded(MobileNetV2Classifier)
    result = expert.run({"image": photos["coffee"]}, {"top_k": 2})
    assert [lab.label for lab in result.labels][:1] == ["espresso"], result.text
    assert result.labels[0].score > 0.5 and len(result.labels) == 2
    with pytest.raises(ExpertError, match="top_k"):
        expert.run({"image": photos["coffee"]}, {"top_k": "many"})


@pytest.mark.slow
def test_classifier_says_when_nothing_fits(loaded, photos) -> None:  # type: ignore[no-untyped-def]
    result = loaded(MobileNetV2Classifier).run({"image": photos["blank"]}, {})
    assert result.data["confident"] is False and result.labels[0].score < 0.2
    assert result.text and result.text.startswith("uncertain (no ImageNet class fits well): ")


# --- detection: faces and people ---------------------------------------------------------------------


@pytest.mark.slow
def test_astronaut_has_one_face_inside_one_person(astronaut_detection: ExpertResult) -> None:
    result = astronaut_detection
    faces = [b for b in result.boxes if b.label == "face"]
    people = [b for b in result.boxes if b.label == "person"]
    assert len(faces) == 1 and len(people) == 1, result.boxes
    face, person = faces[0], people[0]
    assert _inside(face, 512, 512) and _inside(person, 512, 512)
    assert 0.5 < face.score <= 1 and 0 < person.score <= 1
    cx, cy = face.x + face.width / 2, face.y + face.height / 2
    assert 130 < cx < 330 and 40 < cy < 200  # upper middle: her face is about (225, 115)
    assert 50 < face.width < 160
    assert person.x <= face.x and person.y <= face.y  # the face lies within the person
    assert face.x + face.width <= person.x + person.width and face.y + face.height <= person.y + person.height
    assert result.text == "1 person, 1 face"
    assert result.data["people"] == 1 and result.data["faces"] == 1


@pytest.mark.slow
def test_annotated_image_is_a_png_of_the_same_size_with_the_boxes(astronaut_detection: ExpertResult,
                                                                   photos) -> None:  # type: ignore[no-untyped-def]
    assert len(astronaut_detection.media) == 1
    blob = astronaut_detection.media[0]
    assert (blob.kind, blob.mime) == ("image", "image/png")
    out = np.asarray(_png(blob.data).convert("RGB"), dtype=int)
    original = np.asarray(Image.open(io.BytesIO(photos["astronaut"].data)).convert("RGB"), dtype=int)
    assert out.shape == original.shape
    face = next(b for b in astronaut_detection.boxes if b.label == "face")
    right_edge = out[face.y + face.height // 2, face.x + face.width - 2]
    assert tuple(right_edge) == (255, 60, 60)  # the face box is drawn in red
    centre = (face.y + face.height // 2, face.x + face.width // 2)
    assert np.array_equal(out[centre], original[centre])  # ... and the face itself is left alone


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blank", "cat"])
def test_no_face_or_person_is_an_answer_not_an_error(loaded, photos, name: str) -> None:  # type: ignore[no-untyped-def]
    result = loaded(FacePersonDetector).run({"image": photos[name]}, {})
    assert result.boxes == []
    assert result.text == "no people or faces found"
    assert len(result.media) == 1 and _png(result.media[0].data).size == \
        Image.open(io.BytesIO(photos[name].data)).size


@pytest.mark.slow
def test_two_people_side_by_side_are_both_found(loaded) -> None:  # type: ignore[no-untyped-def]
    ast = skimage_data.astronaut()
    result = loaded(FacePersonDetector).run({"image": _media(np.concatenate([ast, ast[:, ::-1]], 1), "two.png")}, {})
    people = sorted((b for b in result.boxes if b.label == "person"), key=lambda b: b.x)
    faces = sorted((b for b in result.boxes if b.label == "face"), key=lambda b: b.x)
    assert len(people) == 2 and len(faces) == 2, result.boxes
    assert people[0].x + people[0].width <= 512 + 20 and people[1].x >= 512 - 20
    assert faces[0].x < 512 < faces[1].x
    assert result.text == "2 people, 2 faces"


@pytest.mark.slow
def test_labels_filter(loaded, photos) -> None:  # type: ignore[no-untyped-def]
    expert = loaded(FacePersonDetector)
    only_faces = expert.run({"image": photos["astronaut"]}, {"labels": "faces"})
    assert [b.label for b in only_faces.boxes] == ["face"] and only_faces.text == "1 face"
    mixed = expert.run({"image": photos["astronaut"]}, {"labels": "person, car"})
    assert [b.label for b in mixed.boxes] == ["person"]
    assert mixed.text == "1 person (this detector cannot find: car)"
    with pytest.raises(ExpertError, match="only faces and people, not: car, dog"):
        expert.run({"image": photos["astronaut"]}, {"labels": "car,dog"})


def test_parse_labels() -> None:
    assert parse_labels(None) == ({"face", "person"}, [])
    assert parse_labels(["People", "heads"]) == ({"face", "person"}, [])
    assert parse_labels("woman; bicycle") == ({"person"}, ["bicycle"])


@pytest.mark.slow
def test_detection_is_thread_safe(loaded, photos, astronaut_detection: ExpertResult) -> None:  # type: ignore[no-untyped-def]
    expert = loaded(FacePersonDetector)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: expert.run({"image": photos["astronaut"]}, {}), range(3)))
    assert all(r.boxes == astronaut_detection.boxes for r in results)


# --- segmentation ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_person_mask_covers_the_astronaut(loaded, photos, astronaut_detection) -> None:  # type: ignore[no-untyped-def]
    result = loaded(PersonSegmentation).run({"image": photos["astronaut"]}, {})
    assert 0.15 < result.data["coverage"] < 0.8 and result.data["people"] == 1
    assert result.text == f"person mask covering {result.data['coverage']:.0%} of the image"
    mask_blob, cutout_blob = result.media
    mask = np.asarray(_png(mask_blob.data))
    assert mask.shape == (512, 512)
    face = next(b for b in astronaut_detection.boxes if b.label == "face")
    assert mask[face.y + face.height // 2, face.x + face.width // 2] > 200  # bright at the face
    assert mask[:60, 440:].mean() < 30  # dark on the space shuttle in the top right corner
    cutout = _png(cutout_blob.data)
    assert cutout.mode == "RGBA" and cutout.size == (512, 512)
    assert np.array_equal(np.asarray(cutout)[..., 3], mask)
    reordered = loaded(PersonSegmentation).run({"image": photos["astronaut"]}, {"output": "cutout"})
    assert _png(reordered.media[0].data).mode == "RGBA"


@pytest.mark.slow
def test_person_mask_of_a_cat_is_empty(loaded, photos) -> None:  # type: ignore[no-untyped-def]
    result = loaded(PersonSegmentation).run({"image": photos["cat"]}, {})
    assert result.data["coverage"] == 0.0 and result.text == "no person found: the mask is empty"
    assert np.asarray(_png(result.media[0].data)).max() <= 127


@pytest.mark.slow
def test_salient_object_mask_covers_the_cat(loaded, photos) -> None:  # type: ignore[no-untyped-def]
    result = loaded(SalientObjectSegmentation).run({"image": photos["cat"]}, {})
    assert 0.3 < result.data["coverage"] < 0.95, result.text
    assert result.text == f"salient object mask covering {result.data['coverage']:.0%} of the image"
    mask = np.asarray(_png(result.media[0].data))
    assert mask.shape == (300, 451)
    assert mask[120:200, 150:300].mean() > 200  # the cat's face (eyes at y~110, nose at ~(260, 240))
    assert mask[:, 430:].mean() < 80  # the background strip on the right


@pytest.mark.slow
def test_salient_object_on_a_blank_image_is_none(loaded, photos) -> None:  # type: ignore[no-untyped-def]
    result = loaded(SalientObjectSegmentation).run({"image": photos["blank"]}, {})
    assert result.data["coverage"] == 0.0 and result.text == "no salient object found: the mask is empty"
    with pytest.raises(ExpertError, match="output must be"):
        loaded(SalientObjectSegmentation).run({"image": photos["blank"]}, {"output": "polygons"})


# --- pose map and OpenCV filters ---------------------------------------------------------------------


@pytest.mark.slow
def test_pose_map_of_the_astronaut(loaded, photos, astronaut_detection) -> None:  # type: ignore[no-untyped-def]
    result = loaded(PoseMap).run({"image": photos["astronaut"]}, {"style": "pose"})
    out = np.asarray(_png(result.media[0].data).convert("RGB"))
    assert out.shape == (512, 512, 3)
    lit = out.max(axis=2) > 40
    assert 0.003 < lit.mean() < 0.2  # a thin skeleton on black
    assert result.text == "OpenPose-style pose map of 1 person" and result.data["people"] == 1
    nose = result.data["keypoints"][0][0]
    face = next(b for b in astronaut_detection.boxes if b.label == "face")
    assert face.x <= nose[0] <= face.x + face.width and face.y <= nose[1] <= face.y + face.height
    assert tuple(out[int(nose[1]), int(nose[0])]) == (255, 0, 0)  # OpenPose's red nose dot


@pytest.mark.slow
def test_pose_map_without_a_person_is_black_and_says_so(loaded, photos) -> None:  # type: ignore[no-untyped-def]
    expert = loaded(PoseMap)
    result = expert.run({"image": photos["blank"]}, {})
    out = np.asarray(_png(result.media[0].data))
    assert out.shape == (300, 400, 3) and out.max() == 0
    assert result.text == "no person found: the pose map is empty (black)" and result.data["people"] == 0
    with pytest.raises(ExpertError, match="only pose maps"):
        expert.run({"image": photos["astronaut"]}, {"style": "sketch"})


@pytest.mark.parametrize("style", sorted(CV_STYLES))
def test_opencv_filters_return_a_png_of_the_same_size(loaded, photos, style: str) -> None:  # type: ignore[no-untyped-def]
    result = loaded(OpenCVFilters).run({"image": photos["astronaut"]}, {"style": style})
    out = _png(result.media[0].data)
    assert out.size == (512, 512) and result.data["style"] == style
    original = np.asarray(Image.open(io.BytesIO(photos["astronaut"].data)).convert("RGB"), dtype=int)
    if style != "gray":
        assert np.abs(np.asarray(out.convert("RGB"), dtype=int) - original).max() > 40


def test_opencv_filters_style_words_and_pose_redirect(loaded, photos) -> None:  # type: ignore[no-untyped-def]
    expert = loaded(OpenCVFilters)
    assert expert.run({"image": photos["blank"], "text": "make it look like a cartoon"}, {}).data["style"] == "cartoon"
    edges = np.asarray(_png(expert.run({"image": photos["astronaut"]}, {"style": "edges"}).media[0].data))
    assert set(np.unique(edges)) <= {0, 255} and 0.01 < (edges == 255).mean() < 0.3
    with pytest.raises(ExpertError, match="google/mediapipe-pose"):
        expert.run({"image": photos["astronaut"]}, {"style": "pose"})
    with pytest.raises(ExpertError, match="unknown style"):
        expert.run({"image": photos["astronaut"]}, {"style": "van-gogh"})


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("cls", ALL_EXPERTS, ids=lambda c: c.model_id)
def test_bad_inputs_are_rejected_by_name(loaded, cls: type[Expert]) -> None:  # type: ignore[no-untyped-def]
    expert = loaded(cls)
    wav = silence(0.5)
    with pytest.raises(ExpertError, match=r"cannot decode image \(audio/wav\)"):
        expert.run({"image": wav}, {})
    with pytest.raises(ExpertError, match="cannot decode image"):
        expert.run({"image": Media(b"\x00garbage" * 50, "image/png")}, {})
    with pytest.raises(ExpertError, match="must be an image"):
        expert.run({"image": "a cat"}, {})
    with pytest.raises(ExpertError, match="must be an image"):
        expert.run({}, {})
    huge = io.BytesIO()
    Image.new("1", (8000, 6000)).save(huge, format="PNG")  # 48 Mpx, a few KB
    with pytest.raises(ExpertError, match="too large"):
        expert.run({"image": Media(huge.getvalue(), "image/png")}, {})


# --- end to end through the real stack -----------------------------------------------------------------


@pytest.mark.slow
@needs(MobileNetV2Classifier)
def test_classifying_the_cat_through_the_workers(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from shared.plan import parse_plan_json
    from shared.run_models import RequestCreate
    from tests.helpers import wait_final

    photo = tmp_path / "cat.png"
    Image.fromarray(skimage_data.chelsea()).save(photo)
    plan = parse_plan_json([{"id": 0, "task": "image-classification", "dep": [-1], "args": {"image": "cat.png"}}])
    run_id = client.submit(RequestCreate(text="what animal is this?", uploads=client.uploads_for([photo]), plan=plan))
    view = wait_final(client, run_id, timeout_s=180)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    task = view.tasks["0"]
    assert task.model == MobileNetV2Classifier.model_id and task.queue == "vision"
    labels = task.output.labels
    assert labels and labels[0].label in {"tabby", "tiger cat", "Egyptian cat"}, task.output
    assert 0.3 < labels[0].score <= 1
