"""User models from HGQ_MODELS_FILE: validation with clear errors, registry, selection, end-to-end
runs on real workers (tests/models_stack.py), and a worker that refuses an invalid file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.custom_models import DiffusersModel, EndpointModel, PythonModel, TransformersModel, load_models_file
from shared.errors import ConfigError
from tests.helpers import run_plan

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


# --- the file ---------------------------------------------------------------------------------
def test_valid_file_defaults_the_pool_and_anchors_file_callables(tmp_path: Path) -> None:
    path = _write(tmp_path, """
models:
  - id: me/reverse
    task: text2text-generation
    backend: python
    callable: ./my_models.py:reverse
    description: reverses words
  - id: my-detr
    task: object-detection
    backend: endpoint
    url: https://detr.example.com
    timeout_s: 60
  - {id: facebook/detr-resnet-50, task: object-detection, backend: hf-inference}
""")
    python, endpoint, hf = load_models_file(path)
    assert isinstance(python, PythonModel) and python.served_pool == "text"
    assert python.callable == f"{tmp_path / 'my_models.py'}:reverse"
    assert isinstance(endpoint, EndpointModel) and endpoint.served_pool == "vision" and endpoint.timeout_s == 60
    assert hf.target == "facebook/detr-resnet-50" and hf.backend == "hf-inference"


@pytest.mark.parametrize("entry, message", [
    ("{id: a, task: summarization, backend: python, callable: 'm:f', colour: red}",
     "entry 1 ('a'): unknown key 'colour' (a python model takes: id, task, pool, description, backend, callable)"),
    ("{id: a, task: make-coffee, backend: python, callable: 'm:f'}", "entry 1 ('a'): task: unknown task type 'make-coffee'"),
    ("{id: a, task: summarization, backend: grpc}",
     "entry 1 ('a'): backend: 'grpc' is not one of python, hf-inference, endpoint"),
    ("{id: a, task: summarization}", "entry 1 ('a'): missing key 'backend'"),
    ("{id: a, task: summarization, backend: endpoint}", "entry 1 ('a'): missing key 'url'"),
    ("{id: a, task: summarization, backend: endpoint, url: 'ftp://x'}", "url: 'ftp://x' is not an http:// or https:// URL"),
    ("{id: a, task: summarization, backend: python, callable: 'no-colon'}", "callable: 'no-colon' is not"),
    ("{id: a, task: text-to-image, backend: endpoint, url: 'http://x', pool: text}",
     "task 'text-to-image' runs on the vision pool, not 'text'"),
    ("{id: a, task: text-to-image, backend: transformers}",
     "the transformers backend does not serve task 'text-to-image' (use backend: diffusers)"),
    ("{id: a, task: summarization, backend: diffusers}", "the diffusers backend does not serve task 'summarization'"),
    ("{id: a, task: openpose-text-to-image, backend: diffusers}",
     "task 'openpose-text-to-image' needs a ControlNet: add controlnet: <repo id or folder>"),
    ("{id: a, task: text-to-image, backend: diffusers, controlnet: x/y}", "controlnet is for the X-text-to-image"),
    ("{id: a, task: text-to-image, backend: diffusers, num_frames: 8}", "num_frames is for text-to-video"),
    ("{id: a, task: text-to-image, backend: diffusers, width: 100}", "width: Input should be a multiple of 8"),
    ("{id: a, task: image-to-text, backend: transformers, device: gpu0}", "device: String should match pattern"),
    ("{id: a, task: image-to-text, backend: transformers, dtype: int8}", "dtype: Input should be 'auto'"),
    ("{id: a, task: image-to-text, backend: transformers, steps: 3}",
     "unknown key 'steps' (a transformers model takes: id, task, pool, description, model, device, dtype, options, "
     "backend, pipeline, batch_size)"),
])
def test_invalid_entries_are_reported_with_file_entry_and_field(tmp_path: Path, entry: str, message: str) -> None:
    path = _write(tmp_path, f"models:\n  - {entry}\n")
    with pytest.raises(ConfigError) as info:
        load_models_file(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_local_backends_default_their_pipeline_and_anchor_folders(tmp_path: Path) -> None:
    path = _write(tmp_path, """
models:
  - {id: Salesforce/blip-image-captioning-base, task: image-to-text, backend: transformers, device: cuda:1}
  - {id: me/depth, task: depth-control, backend: transformers, model: ./weights/dpt, dtype: float16}
  - {id: me/pose, task: openpose-text-to-image, backend: diffusers, model: runwayml/stable-diffusion-v1-5,
     controlnet: ../cn, steps: 4, seed: 3}
""")
    blip, depth, pose = load_models_file(path)
    assert isinstance(blip, TransformersModel) and blip.pipeline == "image-to-text" and blip.weights == blip.id
    assert blip.served_pool == "vision" and blip.device == "cuda:1" and blip.dtype == "auto"
    assert isinstance(depth, TransformersModel) and depth.pipeline == "depth-estimation"
    assert depth.weights == str(tmp_path / "weights" / "dpt")  # relative to the models file
    assert isinstance(pose, DiffusersModel) and pose.controlnet == str(tmp_path.parent / "cn")
    assert pose.weights == "runwayml/stable-diffusion-v1-5" and (pose.steps, pose.seed, pose.fps) == (4, 3, 8)


def test_weights_not_on_this_machine_say_where_they_were_looked_for(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from shared.settings import get_settings
    from workers.hf_local.weights import weights_missing

    monkeypatch.setenv("HGQ_MODEL_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        reason = weights_missing("someone/not-here")
        assert reason is not None and str(tmp_path / "someone--not-here") in reason
        assert "hgq models download" in reason
        assert weights_missing(str(tmp_path / "nope")) == f"model folder {tmp_path / 'nope'} does not exist"
        (tmp_path / "someone--not-here").mkdir()
        assert weights_missing("someone/not-here") is None
    finally:
        get_settings.cache_clear()


def test_models_download_says_it_needs_the_network(tmp_path: Path) -> None:
    path = _write(tmp_path, "models:\n  - {id: me/cap, task: image-to-text, backend: transformers, model: a/b}\n"
                            "  - {id: me/rev, task: summarization, backend: python, callable: 'm:f'}\n")
    env = {**os.environ, "HGQ_MODELS_FILE": str(path), "HGQ_MODEL_DIR": str(tmp_path / "models"),
           "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    env.pop("HF_HUB_OFFLINE", None)
    run = [sys.executable, "-m", "planner_service.cli", "models", "download"]
    proc = subprocess.run(run, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "error: me/cap: cannot fetch a/b from the Hugging Face Hub (this needs network access to it)" in proc.stderr
    proc = subprocess.run([*run, "me/rev"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "not a transformers or diffusers model" in proc.stderr and "me/rev" in proc.stderr


def test_every_problem_at_once_and_file_level_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "models:\n  - {id: a, task: nope, backend: python, callable: 'm:f'}\n"
                            "  - {id: b, task: summarization, backend: http}\n  - 3\n")
    with pytest.raises(ConfigError) as info:
        load_models_file(path)
    assert all(s in str(info.value) for s in ("entry 1 ('a')", "entry 2 ('b')", "entry 3: expected a mapping"))
    with pytest.raises(ConfigError, match="unknown top-level key"):
        load_models_file(_write(tmp_path, "modles: []\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_models_file(_write(tmp_path, "models: [\n"))
    with pytest.raises(ConfigError, match="cannot read it"):
        load_models_file(tmp_path / "missing.yaml")
    dup = "models:\n" + "  - {id: a, task: summarization, backend: endpoint, url: 'http://x'}\n" * 2
    with pytest.raises(ConfigError, match="entry 2 \\('a'\\): duplicate id 'a'"):
        load_models_file(_write(tmp_path, dup))


def test_a_callable_that_cannot_be_imported_stops_registration(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    from workers.model_sources import custom_expert_class

    for target, message in [("tests.no_such_module:f", "cannot import 'tests.no_such_module'"),
                            ("tests.custom_model_example:nope", "has no function 'nope'"),
                            (f"{tmp_path}/absent.py:f", "cannot import")]:
        spec = PythonModel(id="me/x", task="summarization", backend="python", callable=target)
        with pytest.raises(ConfigError, match=message):
            custom_expert_class(spec)


def test_a_file_callable_runs(tmp_path: Path) -> None:
    from workers.model_sources import custom_expert_class

    (tmp_path / "shout.py").write_text("def shout(inputs, params):\n    return inputs['text'].upper() + '!'\n")
    path = _write(tmp_path, "- {id: me/shout, task: text2text-generation, backend: python, callable: ./shout.py:shout}\n")
    (spec,) = load_models_file(path)
    expert = custom_expert_class(spec)()
    assert expert.backend == "python" and expert.run({"text": "hi"}, {}).text == "HI!"


def test_the_readme_example_is_valid_and_runs() -> None:
    from workers.model_sources import custom_expert_class

    (spec,) = load_models_file(ROOT / "examples" / "my_models.yaml")
    assert (spec.id, spec.task, spec.served_pool, spec.backend) == ("me/reverse-words", "text2text-generation",
                                                                     "text", "python")
    result = custom_expert_class(spec)().run({"text": "the quick brown fox"}, {})
    assert result.text == "fox brown quick the" and result.data == {"words": 4}


def test_worker_refuses_to_start_on_an_invalid_file(tmp_path: Path, hgq_env) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, "models:\n  - {id: a, task: summarization, backend: endpoint, urll: 'http://x'}\n")
    env = {**os.environ, **hgq_env, "HGQ_MODELS_FILE": str(path)}
    proc = subprocess.run([sys.executable, "-m", "planner_service.cli", "worker", "text"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"error: HGQ_MODELS_FILE {path} is invalid" in proc.stderr and "unknown key 'urll'" in proc.stderr


# --- on real workers ----------------------------------------------------------------------------
def test_user_models_are_announced_for_their_pool(models_stack) -> None:  # type: ignore[no-untyped-def]
    from shared.redis_conn import text_redis
    from shared.registry import candidates, live_workers

    workers = live_workers(text_redis(models_stack.settings.redis_url), models_stack.settings.key_prefix)
    served = candidates(workers)
    reverse = {m.model_id: m for m in served["text2text-generation"]}["test/reverse-words"]
    assert reverse.backend == "python" and "reverses the order" in reverse.description
    endpoints = {m.model_id: m.backend for m in served["text-classification"]}
    assert endpoints["remote/a-flaky"] == "endpoint"
    text_worker = next(w for w in workers if w.pool == "text")
    assert "test/reverse-words" in {m.model_id for m in text_worker.models}
    env = {**os.environ, "REDIS_URL": models_stack.settings.redis_url, "HGQ_MODELS_FILE": str(models_stack.models_file)}
    listing = subprocess.run([sys.executable, "-m", "planner_service.cli", "models", "--task", "text2text-generation"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "test/reverse-words" in line)
    assert row.split()[:4] == ["text", "text2text-generation", "test/reverse-words", "python"]
    assert "valid: test/reverse-words (text2text-generation, python, text pool)" in listing.stderr


def test_the_planner_plans_selects_and_runs_a_user_model(models_stack, fake_llm) -> None:  # type: ignore[no-untyped-def]
    from shared.run_models import RequestCreate
    from tests.helpers import wait_final

    fake_llm.script("plan", {"tasks": [{"id": 0, "task": "text2text-generation", "dep": [-1],
                                        "args": {"text": "one two three"}}]})
    client = models_stack.client
    view = wait_final(client, client.submit(RequestCreate(text="reverse the order of the words: one two three")))
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    assert view.plan[0]["model"] == "test/reverse-words"  # ranked first for this request
    assert "llm/text2text-generation" in view.plan[0]["fallbacks"]
    task = view.tasks["0"]
    assert task.output.text == "three two one" and task.output.data == {"words": 3}
    assert task.queue == "text" and task.worker.startswith("text-")
    assert "three two one" in view.response
    assert fake_llm.calls("select") == []  # its description matches the request clearly best: no selection call
    assert fake_llm.calls("respond") == []  # the reversed words are the answer, as they are


def test_a_crashing_user_model_falls_back(models_stack, fake_llm) -> None:  # type: ignore[no-untyped-def]
    plan = [{"id": 0, "task": "summarization", "args": {"text": "The venue is booked. The budget is approved."}}]
    view = run_plan(models_stack.client, plan, text="platypus")
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    task = view.tasks["0"]
    assert view.plan[0]["model"] == "test/broken-summary" and task.model != "test/broken-summary"
    first = task.model_attempts[0]
    assert first.model == "test/broken-summary" and first.outcome == "fallback"
    assert first.error == "RuntimeError: this summariser is broken"
    assert task.model_attempts[-1].outcome == "succeeded"
