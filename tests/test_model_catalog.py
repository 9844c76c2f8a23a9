"""The model catalogue (HuggingGPT's models plus hgq's local ones) and candidate ranking."""

from __future__ import annotations

import json

import pytest

from shared.catalog import TASK_TYPES
from shared.model_catalog import (
    DATA_FILE,
    LOCAL_MODELS,
    catalog_entry,
    clean_description,
    entries,
    rank,
    scores,
    similarity,
    words,
)
from shared.registry import ServedModel


def _local_expert_ids() -> list[str]:
    """Every non-diagnostic expert hgq's own pools register (whether or not its packages are here)."""
    from workers.expert import expert_classes
    from workers.pools import POOL_MODULES, import_pool

    for pool in POOL_MODULES:
        import_pool(pool)
    return sorted(c.model_id for c in expert_classes()
                  if not TASK_TYPES[c.task].diagnostic and c.backend in ("local", "llm"))


LOCAL_IDS = _local_expert_ids()


def _m(model_id: str, task: str = "text-classification", backend: str = "huggingface",
       description: str = "") -> ServedModel:
    return ServedModel(model_id=model_id, task=task, backend=backend, description=description)


def test_data_file_is_small_and_trimmed() -> None:
    assert DATA_FILE.stat().st_size < 1_000_000
    rows = [json.loads(line) for line in DATA_FILE.read_text().splitlines() if line.strip()]
    assert len(rows) > 600
    assert all(set(r) == {"id", "task", "likes", "downloads", "description"} for r in rows)
    assert all("```" not in r["description"] and "](" not in r["description"] for r in rows)


def test_huggingface_entries_have_popularity() -> None:
    e = catalog_entry("ProsusAI/finbert")
    assert e is not None and e.task == "text-classification" and not e.local
    assert e.likes > 100 and e.downloads > 1_000_000 and "financial" in e.description.lower()
    assert catalog_entry("no/such-model") is None
    assert len(entries("automatic-speech-recognition")) > 10


@pytest.mark.parametrize("model_id", LOCAL_IDS)
def test_local_models_are_catalogued(model_id: str) -> None:
    e = catalog_entry(model_id)
    assert e is not None and e.local and e.task in TASK_TYPES and len(e.description) > 40


def test_local_entries_are_exactly_hgqs_models() -> None:
    assert len(LOCAL_IDS) >= 14
    assert sorted(e.id for e in LOCAL_MODELS) == LOCAL_IDS


def test_words_and_similarity() -> None:
    assert words("Summarise the meetings") == words("summarization meeting")
    assert similarity("", "anything") == 0.0
    assert similarity("financial news", "sentiment of financial text") > similarity("financial news", "tweets")
    # rare words weigh more than common ones
    assert similarity("financial sentiment", "financial") > similarity("financial sentiment", "sentiment")


def test_popularity_orders_candidates_without_overlap() -> None:
    popular, obscure = _m("facebook/bart-large-cnn", "summarization"), _m("google/pegasus-xsum", "summarization")
    assert [m.model_id for m in rank([obscure, popular], "")] == ["facebook/bart-large-cnn", "google/pegasus-xsum"]


def test_similarity_to_the_request_can_beat_popularity() -> None:
    sst2 = _m("distilbert-base-uncased-finetuned-sst-2-english")  # more downloads
    finbert = _m("ProsusAI/finbert")
    assert rank([sst2, finbert], "Is this financial news positive for the bank?")[0].model_id == "ProsusAI/finbert"


def test_local_first_on_ties_then_id() -> None:
    remote = _m("aaa/unknown-remote")
    local = _m("zzz/unknown-local", backend="local")
    other = _m("bbb/unknown-remote")
    assert [m.model_id for m in rank([other, remote, local], "hello")] == [
        "zzz/unknown-local", "aaa/unknown-remote", "bbb/unknown-remote"]


def test_local_summarizers_ranked_by_what_the_request_asks() -> None:
    textrank = _m("summa/textrank", "summarization", backend="local")
    llm = _m("llm/summarization", "summarization", backend="llm")
    assert rank([llm, textrank], "Extract the key sentences of this long document")[0].model_id == "summa/textrank"
    assert rank([textrank, llm], "Summarise it in your own words, fluent and concise")[0].model_id == "llm/summarization"
    assert rank([llm, textrank], "")[0].model_id == "summa/textrank"  # tie: local first


def test_models_outside_the_catalogue_use_their_announced_description() -> None:
    a = _m("x/plain", "image-to-text", description="reads printed text")
    b = _m("y/handwriting", "image-to-text", description="reads handwritten notes and letters")
    assert rank([a, b], "read my handwritten letter")[0].model_id == "y/handwriting"
    assert all(s >= 0 for _m2, s in scores([a, b], "read"))


def test_clean_description() -> None:
    md = ("\n# Title\n\nSee [the paper](https://x.org/p) and https://y.org.\n```python\ncode()\n```\n"
          "| a | b |\n|---|---|\n**Bold** <b>html</b> `inline`\n")
    assert clean_description(md) == "Title See the paper and Bold html inline"
    assert len(clean_description("word " * 500, limit=50)) <= 54
