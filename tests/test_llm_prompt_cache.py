"""The local LLM server's prompt-state caches (shared/llm_prompt_cache.py), and (slow) a real restart."""

from __future__ import annotations

import re

import numpy as np
import pytest

from shared.llm_server import LocalLLMServer

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make setup)")

from llama_cpp.llama import LlamaState  # noqa: E402

from shared.llm_prompt_cache import PersistentPromptCache, SlimRAMCache, install, slim  # noqa: E402

VOCAB = 1000


def _state(tokens: list[int], state_bytes: int = 4096) -> LlamaState:
    return LlamaState(
        input_ids=np.array(tokens, dtype=np.intc),
        scores=np.ones((512, VOCAB), dtype=np.single),  # what llama-cpp copies: n_batch rows of logits
        n_tokens=len(tokens),
        llama_state=bytes(state_bytes),
        llama_state_size=state_bytes,
        seed=7,
    )


def test_slim_state_keeps_what_a_restore_needs_and_drops_the_logits_history():
    full = _state([1, 2, 3])
    small = slim(full)
    assert small.scores.shape == (1, VOCAB) and small.scores.nbytes < full.scores.nbytes / 500
    assert small.input_ids.tolist() == [1, 2, 3] and small.n_tokens == 3 and small.seed == 7
    assert small.llama_state == full.llama_state and small.llama_state_size == 4096
    # llama-cpp's load_state writes the saved scores over its first n_tokens rows: one row broadcasts
    target = np.zeros((512, VOCAB), dtype=np.single)
    target[: small.n_tokens, :] = small.scores.copy()
    assert target[:3].min() == 1.0


def test_disk_cache_returns_the_longest_prefix_and_keeps_it(tmp_path):
    cache = PersistentPromptCache(cache_dir=str(tmp_path), capacity_bytes=1 << 30)
    planner_prefix = list(range(100))
    cache[planner_prefix + [500, 501]] = _state(planner_prefix + [500, 501])
    cache[[7, 8, 9]] = _state([7, 8, 9])
    for _ in range(2):  # the stock disk cache deletes what it returns: the second lookup would miss
        hit = cache[planner_prefix + [900]]
        assert hit.input_ids.tolist()[:100] == planner_prefix
    with pytest.raises(KeyError):
        cache[[4242]]
    # a new cache object on the same directory (a restarted server) finds it too
    again = PersistentPromptCache(cache_dir=str(tmp_path), capacity_bytes=1 << 30)
    assert again[planner_prefix].n_tokens == 102
    assert again[planner_prefix].scores.shape == (1, VOCAB)  # stored slim


def test_disk_cache_evicts_the_oldest_beyond_its_capacity(tmp_path):
    cache = PersistentPromptCache(cache_dir=str(tmp_path), capacity_bytes=3 * 1024 * 1024)
    for i in range(6):
        cache[[i, i, i]] = _state([i, i, i], state_bytes=1024 * 1024)
    assert 1 <= len(cache.cache) <= 3
    assert cache[[5, 5, 5]].n_tokens == 3  # the newest is kept
    with pytest.raises(KeyError):
        cache[[0, 0, 0]]


def test_a_broken_disk_cache_is_a_miss_never_an_error(tmp_path, monkeypatch):
    cache = PersistentPromptCache(cache_dir=str(tmp_path), capacity_bytes=1 << 30)
    cache[[1, 2, 3]] = _state([1, 2, 3], state_bytes=200_000)  # real states are ~43 MB: kept in files
    blobs = list(tmp_path.rglob("*.val"))
    assert blobs
    for blob in blobs:  # corrupt them
        blob.write_bytes(b"not a pickle")
    with pytest.raises(KeyError):
        cache[[1, 2, 3, 4]]
    assert len(cache.cache) == 0  # the unreadable entry was dropped

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.cache, "set", disk_full)
    cache[[5, 6]] = _state([5, 6])  # a failed write is skipped: the completion it follows still answers
    with pytest.raises(KeyError):
        cache[[5, 6]]


def test_ram_cache_counts_what_it_holds():
    cache = SlimRAMCache(capacity_bytes=1 << 30)
    cache[[1, 2]] = _state([1, 2])
    assert cache[[1, 2, 3]].scores.shape == (1, VOCAB)


def test_install_makes_the_server_build_hgqs_caches(tmp_path, monkeypatch):
    monkeypatch.setattr(llama_cpp, "LlamaRAMCache", llama_cpp.LlamaRAMCache)
    monkeypatch.setattr(llama_cpp, "LlamaDiskCache", llama_cpp.LlamaDiskCache)
    install(str(tmp_path / "pc"))
    disk = llama_cpp.LlamaDiskCache(capacity_bytes=1 << 20)  # as llama_cpp.server.model builds it
    assert isinstance(disk, PersistentPromptCache) and (tmp_path / "pc").is_dir()
    assert llama_cpp.LlamaRAMCache is SlimRAMCache


# ------------------------------------------------------------------------------------------
# slow: a real server restart
# ------------------------------------------------------------------------------------------

_SYSTEM = ("You are a careful assistant. Answer in one short sentence. " * 40).strip()


def _ask(server: LocalLLMServer, question: str) -> str:
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key="sk-local", timeout=240)
    reply = client.chat.completions.create(
        model=server.alias, temperature=0, max_tokens=24,
        messages=[{"role": "system", "content": _SYSTEM}, {"role": "user", "content": question}])
    return reply.choices[0].message.content or ""


@pytest.mark.slow
def test_a_restarted_server_reuses_the_prompt_prefix_from_disk_and_answers_the_same(tmp_path):
    from tests.test_local_llm import _real_model_or_skip

    model = _real_model_or_skip()
    cache_dir = tmp_path / "prompt-cache"

    def server(log: str, **kw: object) -> LocalLLMServer:
        return LocalLLMServer(model_path=model, alias="q", log_path=tmp_path / log, n_ctx=2048, **kw)

    with server("first.log", cache_mb=256, cache_dir=cache_dir) as first:
        _ask(first, "What colour is the sky?")
    assert cache_dir.is_dir() and sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file()) < 100 * 2**20
    with server("second.log", cache_mb=256, cache_dir=cache_dir) as second:
        restored = _ask(second, "Name a fruit.")
    log = (tmp_path / "second.log").read_text(errors="replace")
    assert "cache hit" in log, log[-2000:]
    reused = [int(n) for n in re.findall(r"(\d+) prefix-match hit", log)]
    assert reused and max(reused) > 300  # the whole system prompt came from disk, not re-evaluated
    with server("cold.log", cache_mb=0) as cold:
        assert _ask(cold, "Name a fruit.") == restored  # a restored state answers exactly as a cold one
