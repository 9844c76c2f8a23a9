"""Text experts on real inputs: VADER sentiment, langdetect, TextRank summaries."""

from __future__ import annotations

import pytest

from shared.catalog import task_type
from shared.errors import ExpertError
from tests.helpers import needs
from workers.expert import expert_classes, get_expert
from workers.text.experts import LangDetect, TextRankSummarizer, VaderSentiment, split_sentences

LONG = (
    "The Industrial Revolution began in Great Britain in the late eighteenth century. "
    "It marked a major turning point in history, as almost every aspect of daily life was influenced in some way. "
    "Average income and population began to exhibit unprecedented sustained growth. "
    "Textile manufacturing was the first industry to use modern production methods, and the factory system spread. "
    "Steam power, fuelled by coal, allowed factories to be built away from rivers. "
    "The railway network expanded rapidly, moving goods and people faster than ever before. "
    "Working conditions in early factories were often harsh, with long hours and child labour common. "
    "Over time, reforms improved wages, safety and education for workers. "
    "Historians still debate the causes of the revolution, pointing to coal, colonial trade, and institutions. "
    "Its effects spread to Europe and North America during the nineteenth century."
)




def test_text_experts_serve_catalogued_text_tasks() -> None:
    text_experts = set(expert_classes("text"))
    assert {VaderSentiment, LangDetect, TextRankSummarizer} <= text_experts
    for cls in (VaderSentiment, LangDetect, TextRankSummarizer):
        spec = task_type(cls.task)
        assert spec is not None and spec.pool == cls.pool == "text"


@needs(VaderSentiment)
@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("I absolutely love this wonderful product, it made my day!", "positive"),
        ("This is the worst, most horrible experience I have ever had.", "negative"),
        ("The meeting is at three o'clock in room four.", "neutral"),
    ],
)
def test_sentiment(sentence: str, expected: str) -> None:
    result = get_expert(VaderSentiment.model_id).run({"text": sentence}, {})
    assert result.text == expected
    assert result.labels[0].label == expected
    assert {lab.label for lab in result.labels} == {"positive", "negative", "neutral"}
    assert result.labels[0].score > 0.5
    assert abs(sum(lab.score for lab in result.labels) - 1.0) < 1e-3


@needs(VaderSentiment)
def test_sentiment_rejects_zero_shot_labels_it_cannot_do() -> None:
    expert = get_expert(VaderSentiment.model_id)
    with pytest.raises(ExpertError, match="only labels sentiment"):
        expert.run({"text": "A cat on a mat."}, {"labels": "animals,politics"})
    only = expert.run({"text": "What a great day"}, {"labels": "positive, negative"})
    assert [lab.label for lab in only.labels] == ["positive", "negative"]


@needs(LangDetect)
@pytest.mark.parametrize(
    ("sentence", "code", "name"),
    [
        ("The weather is lovely today and we are going to the park with the children.", "en", "English"),
        ("Le chat dort sur le canapé pendant que nous préparons le dîner ce soir.", "fr", "French"),
        ("El perro corre por el parque mientras los niños juegan al fútbol.", "es", "Spanish"),
    ],
)
def test_language_detection(sentence: str, code: str, name: str) -> None:
    result = get_expert(LangDetect.model_id).run({"text": sentence}, {})
    assert result.text == name
    assert result.data["language"] == code
    assert result.labels[0].label == code and result.labels[0].score > 0.9


@needs(LangDetect)
def test_language_detection_is_deterministic_and_rejects_no_text() -> None:
    expert = get_expert(LangDetect.model_id)
    ambiguous = "Hola, merci, ciao"
    first = expert.run({"text": ambiguous}, {}).labels
    assert all(expert.run({"text": ambiguous}, {}).labels == first for _ in range(5))
    with pytest.raises(ExpertError):
        expert.run({"text": "12345 !!!"}, {})
    with pytest.raises(ExpertError):
        expert.run({"text": "   "}, {})


@needs(TextRankSummarizer)
def test_summary_of_a_long_paragraph_is_shorter_and_extractive() -> None:
    result = get_expert(TextRankSummarizer.model_id).run({"text": LONG}, {})
    assert result.text and len(result.text) < len(LONG) / 2
    picked = split_sentences(result.text)
    assert 1 <= len(picked) <= 5
    assert all(sentence in LONG for sentence in picked)
    assert result.data["method"] == "textrank"


@needs(TextRankSummarizer)
@pytest.mark.parametrize("text", ["Short text here.", "Cats are small. They purr a lot.", "no punctuation at all"])
def test_summary_of_short_texts_is_sensible(text: str) -> None:
    result = get_expert(TextRankSummarizer.model_id).run({"text": text}, {})
    assert result.text
    assert len(result.text) <= len(text)
    assert result.text in text


@needs(TextRankSummarizer)
def test_summary_sentence_count_param() -> None:
    result = get_expert(TextRankSummarizer.model_id).run({"text": LONG}, {"sentences": 2})
    assert len(split_sentences(result.text or "")) == 2
