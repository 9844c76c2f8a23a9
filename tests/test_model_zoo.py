"""The transformers and diffusers backends of HGQ_MODELS_FILE, on real workers: tiny models with random
weights (tests/tiny_models.py) saved into HGQ_MODEL_DIR as `<org>--<name>` folders, loaded by a vision
worker process, run through the real backend code; each output has the type and shape a user checks
(a caption, boxes with labels, a depth image, an image of the asked size, a video of N frames)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import run_plan

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(p) is None for p in ("transformers", "diffusers", "av")),
    reason="transformers, diffusers or av not installed")]

ROOT = Path(__file__).resolve().parent.parent
# a rare word in every description and request: the ranking picks these models over the built-in ones
WORD = "capybara"
TRANSFORMERS = [
    {"id": "tiny/vit-gpt2-captioner", "task": "image-to-text", "build": "captioner"},
    {"id": "tiny/detr", "task": "object-detection", "build": "detr", "options": {"threshold": 0.0}},
    {"id": "tiny/vilt-vqa", "task": "visual-question-answering", "build": "vilt"},
    {"id": "tiny/dpt", "task": "depth-estimation", "build": "dpt"},
    {"id": "tiny/dpt-control", "task": "depth-control", "model": "tiny/dpt"},
]
DIFFUSERS = [
    {"id": "tiny/sd", "task": "text-to-image", "build": "stable_diffusion", "width": 64, "height": 48, "steps": 2,
     "seed": 1},
    {"id": "tiny/sd-controlnet-canny", "task": "canny-text-to-image", "model": "tiny/sd",
     "controlnet": "tiny/controlnet-canny", "steps": 2},
    {"id": "tiny/text-to-video", "task": "text-to-video", "build": "text_to_video", "num_frames": 6, "fps": 4,
     "width": 32, "height": 32, "steps": 2},
]
MISSING = {"id": "tiny/not-downloaded", "task": "image-classification", "backend": "transformers"}


def _entries() -> list[dict[str, Any]]:
    out = []
    for backend, entries in (("transformers", TRANSFORMERS), ("diffusers", DIFFUSERS)):
        for e in entries:
            entry = {k: v for k, v in e.items() if k != "build"}
            out.append({**entry, "backend": backend, "device": "cpu", "description": f"{WORD} {e['task']} test model"})
    return [*out, MISSING]


@pytest.fixture(scope="module")
def zoo(hgq_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from planner_service.client import HgqClient
    from planner_service.stack import Stack
    from shared.settings import Settings
    from tests import tiny_models
    from workers.app import create_app

    home = tmp_path_factory.mktemp("zoo")
    model_dir = home / "model-dir"
    for e in TRANSFORMERS + DIFFUSERS:
        if "build" in e:
            getattr(tiny_models, e["build"])(model_dir / e["id"].replace("/", "--"))
    tiny_models.controlnet(model_dir / "tiny--controlnet-canny")
    models_file = home / "models.yaml"
    models_file.write_text(yaml.safe_dump({"models": _entries()}, sort_keys=False))
    env = {**{k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HGQ_MODELS_FILE")}, **hgq_env}
    env.update({"REDIS_URL": hgq_env["REDIS_URL"].rsplit("/", 1)[0] + "/4", "HGQ_HOME": str(home),
                "HF_HUB_OFFLINE": "1", "HGQ_WORKER_CONCURRENCY": "1", "HGQ_PRELOAD_MODELS": "1"})
    settings = Settings(_env_file=None).model_copy(update={"redis_url": env["REDIS_URL"], "home": home})
    stack = Stack(settings, say=lambda m: None, log_dir=home / "logs", env=env)
    # the built-in vision models on the pool's queue; the zoo on a lane's worker, as on a GPU host
    lane = {"HGQ_MODELS_FILE": str(models_file), "HGQ_MODEL_DIR": str(model_dir)}
    try:
        stack.start_workers(("llm", "vision", "vision.gpu"), env_of={"vision.gpu": lane})
        yield {"client": HgqClient(settings, create_app(settings)), "settings": settings, "env": env, "home": home}
    finally:
        stack.stop()


def _photo() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (80, 64), (240, 240, 240))
    ImageDraw.Draw(img).rectangle([20, 16, 60, 48], fill=(200, 30, 30), outline=(0, 0, 0), width=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _image(client: Any, ref: Any) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(client.artifacts.get(ref.id)))


def test_models_are_announced_and_one_without_weights_is_not(zoo: dict[str, Any]) -> None:
    from shared.redis_conn import text_redis
    from shared.registry import candidates, live_workers, model_routes

    workers = live_workers(text_redis(zoo["settings"].redis_url), zoo["settings"].key_prefix)
    served = candidates(workers)
    routes = model_routes(workers)
    assert routes["tiny/sd"] == "vision.gpu" and "hgq/canny-control" not in routes  # served on both queues
    backends = {m.model_id: m.backend for models in served.values() for m in models}
    for e in TRANSFORMERS:
        assert backends.get(e["id"]) == "transformers", e["id"]
    for e in DIFFUSERS:
        assert backends.get(e["id"]) == "diffusers", e["id"]
    assert MISSING["id"] not in backends  # no weights on this machine: not offered to the planner
    assert "tiny/sd-controlnet-canny" in {m.model_id for m in served["canny-text-to-image"]}


def test_transformers_models_caption_detect_answer_and_map_depth(zoo: dict[str, Any]) -> None:
    client = zoo["client"]
    upload = client.artifacts.put(_photo(), "image/png", "image", "box.png")
    plan = [{"id": 0, "task": "image-to-text", "args": {"image": "box.png"}},
            {"id": 1, "task": "object-detection", "args": {"image": "box.png"}},
            {"id": 2, "task": "visual-question-answering", "args": {"image": "box.png", "text": "is it red"}},
            {"id": 3, "task": "depth-estimation", "args": {"image": "box.png"}},
            {"id": 4, "task": "depth-control", "args": {"image": "box.png"}}]
    view = run_plan(client, plan, text=f"{WORD}: describe, detect, answer, depth", uploads={"box.png": upload},
                    timeout_s=180)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    tasks = view.tasks
    assert [tasks[str(i)].model for i in range(5)] == [e["id"] for e in TRANSFORMERS]
    assert {tasks[str(i)].queue for i in range(5)} == {"vision.gpu"}  # only the lane's worker has them
    caption = tasks["0"].output.text
    assert isinstance(caption, str) and caption.strip() and set(caption.split()) <= set(__import__(
        "tests.tiny_models", fromlist=["WORDS"]).WORDS)  # words of the tiny tokenizer
    detection = tasks["1"].output
    assert len(detection.boxes) == 5 and {b.label for b in detection.boxes} <= {"cat", "dog", "person"}
    assert all(0 <= b.x <= 80 and 0 <= b.y <= 64 and b.width >= 0 for b in detection.boxes)
    drawn = _image(client, detection.artifacts[0])
    assert drawn.size == (80, 64)  # the boxes are drawn on the photo itself
    vqa = tasks["2"].output
    assert vqa.text in {"yes", "no", "two"} and 0 <= vqa.data["score"] <= 1
    for i in ("3", "4"):
        ref = tasks[i].output.artifacts[0]
        assert ref.kind == "image" and ref.mime == "image/png"
        assert _image(client, ref).size == (80, 64)  # the depth map is the photo's size


def test_diffusers_models_draw_follow_a_control_map_and_make_a_video(zoo: dict[str, Any]) -> None:
    import av

    client = zoo["client"]
    upload = client.artifacts.put(_photo(), "image/png", "image", "box.png")
    plan = [{"id": 0, "task": "text-to-image", "args": {"text": "a red cat"}},
            {"id": 1, "task": "canny-control", "args": {"image": "box.png"}},
            {"id": 2, "task": "canny-text-to-image", "dep": [1], "args": {"image": "<GENERATED>-1",
                                                                          "text": "a blue dog"}},
            {"id": 3, "task": "text-to-video", "args": {"text": "a cat on the grass"}}]
    view = run_plan(client, plan, text=f"{WORD}: draw, control, video", uploads={"box.png": upload}, timeout_s=180)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    tasks = view.tasks
    assert tasks["0"].model == "tiny/sd" and tasks["1"].model == "hgq/canny-control"
    assert tasks["2"].model == "tiny/sd-controlnet-canny" and tasks["3"].model == "tiny/text-to-video"
    assert [tasks[i].queue for i in "0123"] == ["vision.gpu", "vision", "vision.gpu", "vision.gpu"]
    assert _image(client, tasks["0"].output.artifacts[0]).size == (64, 48)  # the configured width x height
    control = _image(client, tasks["1"].output.artifacts[0])
    assert control.size == (80, 64) and control.mode == "L"  # edges of the photo
    assert _image(client, tasks["2"].output.artifacts[0]).size == (80, 64)  # laid out on the control map
    video = tasks["3"].output.artifacts[0]
    assert video.kind == "video" and video.mime in ("video/mp4", "video/webm")
    with av.open(io.BytesIO(client.artifacts.get(video.id))) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (32, 32, 3)
    assert view.artifacts[-1].kind == "video"  # listed with the run's files (web page, chat content)
    # the chat endpoint links it (signed URL); MCP returns it as an embedded file with its type
    import base64

    from planner_service.api.openai_facade import _artifact_markdown
    from planner_service.api.signed_urls import UrlSigner
    from planner_service.mcp_server import HgqTools, result_content
    from shared.redis_conn import text_redis

    settings = zoo["settings"]
    markdown = _artifact_markdown(view, UrlSigner(settings, text_redis(settings.redis_url), settings.key_prefix),
                                  "http://hgq.test/")
    assert f"[video from task 3 ({video.mime})](http://hgq.test/v1/artifacts/{video.id}" in markdown
    embedded = result_content(HgqTools(settings, client), view)[-1]
    assert embedded.type == "resource" and embedded.resource.mime_type == video.mime
    assert base64.b64decode(embedded.resource.blob) == client.artifacts.get(video.id)


@pytest.mark.parametrize("backend", ["transformers", "diffusers"])
def test_hgq_ask_runs_a_plan_on_each_backend(zoo: dict[str, Any], backend: str, tmp_path: Path) -> None:
    photo = tmp_path / "box.png"
    photo.write_bytes(_photo())
    plan = tmp_path / "plan.json"
    if backend == "transformers":
        plan.write_text(json.dumps([{"id": 0, "task": "object-detection", "args": {"image": "box.png"}}]))
        args = ["--file", str(photo)]
    else:
        plan.write_text(json.dumps([{"id": 0, "task": "text-to-video", "args": {"text": "a dog"}}]))
        args = []
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "planner_service.cli", "ask", f"{WORD} {backend}", "--plan",
                           str(plan), "--json", *args], env={**zoo["env"], "HGQ_OUTPUT_DIR": str(out)}, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(proc.stdout)
    assert run["status"] == "succeeded"
    task = run["tasks"]["0"]
    if backend == "transformers":
        assert task["model"] == "tiny/detr" and len(task["output"]["boxes"]) == 5
    else:
        assert task["model"] == "tiny/text-to-video"
        saved = [p for p in out.rglob("*") if p.is_file()]
        assert [p.suffix for p in saved] in ([".mp4"], [".webm"])  # saved where the CLI puts files
        assert task["output"]["artifacts"][0]["kind"] == "video"


# --- in one process: every call of the transformers backend, and shared diffusers weights ---------------
def _client(task: str, path: Path, **options: Any) -> Any:
    from shared.custom_models import TRANSFORMERS_PIPELINES
    from workers.hf_local.pipeline_client import PipelineClient, load_pipeline

    return PipelineClient(load_pipeline(TRANSFORMERS_PIPELINES[task], str(path), "cpu", None, 1), options)


def _wav(seconds: float = 1.0) -> bytes:
    import numpy as np

    from workers.hf_local.pipeline_client import wav_bytes

    t = np.arange(int(16000 * seconds)) / 16000
    return wav_bytes(0.3 * np.sin(2 * np.pi * 220 * t), 16000)


def test_text_and_audio_calls_map_onto_typed_outputs(tmp_path: Path) -> None:
    from tests import tiny_models
    from tests.tiny_models import WORDS
    from workers.expert import Media
    from workers.remote.calls import CALLS

    t5 = tiny_models.t5(tmp_path / "t5")
    text = {"text": "the cat sits on the red grass"}
    for task in ("summarization", "translation", "text2text-generation"):  # no pipeline in transformers 5
        out = CALLS[task](_client(task, t5), text, {"target": "French"} if task == "translation" else {})
        assert out.text and set(out.text.split()) <= set(WORDS), task
    qa = CALLS["question-answering"](_client("question-answering", tiny_models.bert(tmp_path / "qa", "qa")),
                                     {**text, "question": "where does the cat sit"}, {})
    assert qa.text and qa.text in text["text"] and 0 <= qa.data["score"] <= 1  # a span of the context
    labels = CALLS["text-classification"](
        _client("text-classification", tiny_models.bert(tmp_path / "cls", "classes")), text, {})
    assert {lab.label for lab in labels.labels} == {"NEGATIVE", "POSITIVE"} and labels.text in ("NEGATIVE", "POSITIVE")
    ner = CALLS["token-classification"](_client("token-classification", tiny_models.bert(tmp_path / "ner", "tokens")),
                                        text, {})
    assert isinstance(ner.text, str) and isinstance(ner.data["entities"], list)
    sim = CALLS["sentence-similarity"](_client("sentence-similarity", tiny_models.bert(tmp_path / "base", "base")),
                                       {"text": "the red cat", "text2": "the red cat"}, {})
    assert abs(sim.data["similarity"] - 1.0) < 1e-4  # a text is as similar to itself as can be
    gen = CALLS["text-generation"](_client("text-generation", tiny_models.gpt2(tmp_path / "gpt2"),
                                           max_new_tokens=4), {"text": "the cat"}, {})
    assert isinstance(gen.text, str)
    asr = CALLS["automatic-speech-recognition"](
        _client("automatic-speech-recognition", tiny_models.wav2vec2(tmp_path / "w2v")),
        {"audio": Media(data=_wav(), mime="audio/wav")}, {})
    # letters of its vocabulary (random weights also say <unk>, which CTC decoding keeps)
    assert isinstance(asr.text, str) and set(asr.text.replace("<unk>", "").replace(" ", "")) <= set("ETAOINSHRDLU")


def test_diffusers_entries_of_one_checkpoint_share_its_weights(tmp_path: Path) -> None:
    from shared.custom_models import DiffusersModel
    from tests import tiny_models
    from workers.hf_local.diffusers_client import load_diffusers

    sd, cn = tiny_models.stable_diffusion(tmp_path / "sd"), tiny_models.controlnet(tmp_path / "cn")
    common = {"backend": "diffusers", "model": str(sd), "device": "cpu"}
    t2i, _ = load_diffusers(DiffusersModel(id="a", task="text-to-image", **common))
    i2i, _ = load_diffusers(DiffusersModel(id="b", task="image-to-image", **common))
    pose, _ = load_diffusers(DiffusersModel(id="c", task="openpose-text-to-image", controlnet=str(cn), **common))
    assert t2i.unet is i2i.unet is pose.unet and t2i.vae is pose.vae  # one copy in the worker process
    assert type(i2i).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(pose).__name__ == "StableDiffusionControlNetPipeline"


def test_the_web_page_plays_a_generated_video_inline(zoo: dict[str, Any]) -> None:
    """The web page shows a video artifact as a playing <video> (headless Chromium)."""
    from tests.test_web import CHROMEDRIVER, CHROMIUM

    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Debian chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from planner_service.api import create_api
    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis
    from tests.test_api import ThreadServer, api_settings_for_tests
    from tests.test_web import _send_with_plan, _wait

    settings = zoo["settings"]
    key, _ = ApiKeys(text_redis(settings.redis_url), settings.key_prefix).create("zoo-web")
    server = ThreadServer(create_api(settings, api_settings_for_tests())).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        d.get(server.url + "/")
        d.find_element(By.ID, "api-key").send_keys(key)
        d.find_element(By.ID, "key-save").click()
        turn = _send_with_plan(d, [{"id": 0, "task": "text-to-video", "args": {"text": "a dog on the grass"}}],
                               f"{WORD}: a short clip of a dog")
        _wait(d, lambda: turn.get_attribute("data-status") == "succeeded", 120, "the run to succeed")
        video = _wait(d, lambda: turn.find_elements(By.CSS_SELECTOR, ".artifacts video"), 20, "the video")[0]
        size = _wait(d, lambda: d.execute_script(
            "const v = arguments[0]; return v.readyState >= 1 && [v.videoWidth, v.videoHeight, v.duration]", video),
            20, "the video's metadata")
        assert size[:2] == [32, 32] and 1.0 <= size[2] <= 2.0  # 6 frames at 4 fps
        assert video.get_attribute("controls") is not None
    finally:
        d.quit()
        server.stop()
