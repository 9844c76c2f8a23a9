"""Model selection routes a task's literal args to the models that understand them (pure, no LLM)."""

from __future__ import annotations

import pytest

from planner_service.selection import select_models
from shared.outputs import ArtifactRef
from shared.plan import PlanTask, validate_plan
from shared.registry import ServedModel
from shared.settings import Settings
from workers.pools import served_models


@pytest.fixture(scope="module")
def served() -> dict[str, list[ServedModel]]:
    """What this install's text and vision workers announce (the real experts' declared args)."""
    out: dict[str, list[ServedModel]] = {}
    for pool in ("text", "vision"):
        for model in served_models(pool, Settings(diagnostics=False)):
            out.setdefault(model.task, []).append(model)
    return out


class NoCallExpected:
    def chat_json(self, *_: object) -> dict[str, object]:
        raise AssertionError("one fitting candidate must be chosen without an LLM call")


PHOTO = {"photo.png": ArtifactRef(id="0" * 64, mime="image/png", kind="image", size=1, name="photo.png")}


def _choose(served: dict[str, list[ServedModel]], task: str, args: dict[str, str], request: str = "") -> tuple[str, str]:
    plan = validate_plan([PlanTask(id=0, task=task, args=args)], uploads=PHOTO)
    reasons = select_models(NoCallExpected(), request, plan, served)  # type: ignore[arg-type]
    return str(plan.nodes[0].model), reasons[0]


def _ids(served: dict[str, list[ServedModel]], task: str) -> set[str]:
    return {m.model_id for m in served.get(task, [])}


def test_topic_labels_go_to_zero_shot_and_no_labels_to_sentiment(served) -> None:  # type: ignore[no-untyped-def]
    need = {"cjhutto/vaderSentiment", "sentence-transformers/all-MiniLM-L6-v2:zero-shot"}
    if not need <= _ids(served, "text-classification"):
        pytest.skip("VADER or MiniLM not installed")
    assert _choose(served, "text-classification", {"text": "The striker scored twice.", "labels": "sports,politics"}) \
        == ("sentence-transformers/all-MiniLM-L6-v2:zero-shot", "only candidate for its args")
    assert _choose(served, "text-classification", {"text": "I love it"})[0] == "cjhutto/vaderSentiment"


def test_pose_style_goes_to_the_pose_model_and_other_styles_never_do(served) -> None:  # type: ignore[no-untyped-def]
    if "google/mediapipe-pose" not in _ids(served, "image-to-image"):
        pytest.skip("mediapipe not installed")
    assert _choose(served, "image-to-image", {"image": "photo.png", "style": "pose"}) == \
        ("google/mediapipe-pose", "only candidate for its args")
    plan = validate_plan([PlanTask(id=0, task="image-to-image", args={"image": "photo.png", "style": "canny"})],
                         uploads=PHOTO)
    select_models(None, "edges of my photo", plan, served)
    node = plan.nodes[0]
    assert node.model != "google/mediapipe-pose" and "google/mediapipe-pose" not in node.fallbacks


def test_apertium_only_for_english_or_spanish_targets(served) -> None:  # type: ignore[no-untyped-def]
    if "apertium/apertium-eng-spa" not in _ids(served, "translation"):
        pytest.skip("apertium not installed")
    llm = ServedModel(model_id="llm/translation", task="translation", backend="llm")  # any target
    candidates = {"translation": [*served["translation"], llm]}
    plan = validate_plan([PlanTask(id=0, task="translation", args={"text": "Good morning", "target": "French"})])
    select_models(None, "translate into French", plan, candidates)
    assert plan.nodes[0].model != "apertium/apertium-eng-spa"
    assert "apertium/apertium-eng-spa" not in plan.nodes[0].fallbacks


def test_when_no_model_fits_the_args_all_candidates_stay() -> None:
    only = ServedModel(model_id="m/sentiment", task="text-classification", param_choices={"labels": ["positive"]})
    plan = validate_plan([PlanTask(id=0, task="text-classification", args={"text": "x", "labels": "sports,art"})])
    select_models(None, "", plan, {"text-classification": [only]})
    assert plan.nodes[0].model == "m/sentiment"  # its error will name the problem, not "no model"


def test_accepts_checks_required_args_and_each_listed_value() -> None:
    model = ServedModel(model_id="m", task="t", required_params=["labels"], param_choices={"labels": ["a", "b"]})
    assert model.accepts({"labels": "a, B"}) and not model.accepts({"labels": "a,c"})
    assert not model.accepts({}) and not model.accepts({"labels": "  "})


def test_models_only_a_lane_serves_are_routed_to_the_lanes_queue() -> None:
    from shared.plan import Node, ValidatedPlan
    from shared.registry import ServedModel, WorkerAnnouncement, model_routes

    def worker(name: str, queue: str, *models: str) -> WorkerAnnouncement:
        return WorkerAnnouncement(hostname=name, pool="vision", queue=queue, pid=1, started_at=0.0,
                                  models=[ServedModel(model_id=m, task="text-to-image") for m in models])

    workers = [worker("cpu-1", "vision", "builtin"), worker("gpu-1", "vision.gpu", "builtin", "sdxl", "flux"),
               worker("gpu-2", "vision.gpu", "sdxl"), worker("big-1", "vision.big", "flux"),
               worker("big-2", "vision.big", "flux")]
    routes = model_routes(workers)
    # on the pool's queue when any worker there serves it; else the lane with the most workers serving it
    assert routes == {"sdxl": "vision.gpu", "flux": "vision.big"}
    plan = ValidatedPlan(nodes=[Node(id=0, task="text-to-image", pool="vision", deps=[], args={}, inputs={},
                                     params={}, model=m) for m in ("builtin", "sdxl")], routes=routes)
    assert [plan.queue_of(n) for n in plan.nodes] == ["vision", "vision.gpu"]
    assert ValidatedPlan.model_validate_json(plan.model_dump_json()).routes == routes  # stored with the plan


def test_a_lane_name_is_checked() -> None:
    from click.testing import CliRunner

    from planner_service.cli import main

    for args in (["worker", "llm", "--lane", "gpu"], ["worker", "vision", "--lane", "GPU 0"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and "a lane is for the text, vision and audio pools" in result.output
