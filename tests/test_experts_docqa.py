"""Document QA on a rendered invoice (Tesseract + MiniLM), and a new text expert through real workers."""

from __future__ import annotations

import pytest

from shared.errors import ExpertError
from tests.helpers import run_plan
from tests.media import text_image
from workers.expert import Expert, Media, expert_classes, get_expert
from workers.text.spacy_experts import SpacyNER
from workers.vision.docqa_experts import TesseractMiniLMDocQA

pytestmark = pytest.mark.slow

INVOICE = ["ACME Supplies Ltd", "Invoice number 4711", "Total due: 120 EUR", "Due date: 3 March 2025"]


@pytest.fixture(scope="module")
def docqa() -> Expert:
    if TesseractMiniLMDocQA.unavailable_reason():
        pytest.skip(TesseractMiniLMDocQA.unavailable_reason() or "")
    expert = get_expert(TesseractMiniLMDocQA.model_id)
    expert.ensure_loaded()
    return expert


@pytest.fixture(scope="module")
def invoice() -> Media:
    return text_image(INVOICE)


def test_docqa_is_a_vision_expert() -> None:
    assert TesseractMiniLMDocQA in expert_classes("vision")
    assert TesseractMiniLMDocQA.task == "document-question-answering"


@pytest.mark.parametrize(
    ("question", "needle"),
    [("What is the total due?", "120"), ("What is the invoice number?", "4711"),
     ("When is the payment due?", "March 2025")],
)
def test_docqa_answers_from_the_invoice_image(docqa: Expert, invoice: Media, question: str, needle: str) -> None:
    result = docqa.run({"image": invoice, "text": question}, {})
    assert result.text is not None and needle in result.text
    assert "Invoice number 4711" in result.data["ocr_text"]
    assert result.data["ocr_truncated"] is False
    assert result.data["score"] == result.data["passages"][0]["score"] > 0.3


def test_docqa_rejects_blank_images_and_missing_questions(docqa: Expert, invoice: Media) -> None:
    blank = text_image([" "])
    with pytest.raises(ExpertError, match="no text found"):
        docqa.run({"image": blank, "text": "What is the total?"}, {})
    with pytest.raises(ExpertError, match="input 'text'"):
        docqa.run({"image": invoice}, {})
    with pytest.raises(ExpertError, match="must be an image"):
        docqa.run({"image": "invoice.png", "text": "What is the total?"}, {})


@pytest.mark.skipif(SpacyNER.unavailable_reason() is not None, reason=SpacyNER.unavailable_reason() or "")
def test_ner_through_real_workers(client) -> None:  # type: ignore[no-untyped-def]
    view = run_plan(client, [
        {"id": 0, "task": "token-classification", "dep": [-1],
         "args": {"text": "Ada Lovelace was born in London in 1815."}},
    ], text="find the names in: Ada Lovelace was born in London in 1815.", timeout_s=120)
    assert view.status == "succeeded", view.model_dump_json(indent=1)
    task = view.tasks["0"]
    assert task.model == SpacyNER.model_id and task.queue == "text"
    entities = {(e["text"], e["label"]) for e in task.output.data["entities"]}
    assert entities == {("Ada Lovelace", "PERSON"), ("London", "GPE"), ("1815", "DATE")}
