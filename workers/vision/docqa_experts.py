"""Document question answering: Tesseract OCR, then the OCR line closest to the question (MiniLM)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import ExpertError
from shared.outputs import ExpertResult
from workers.expert import Expert, InputValue, get_expert, register
from workers.text.embedding_experts import answer_from_context, minilm, minilm_unavailable
from workers.text.experts import _text
from workers.vision.experts import TesseractOCR

OCR_CHARS = 2000  # of the OCR text kept in the output


@register
class TesseractMiniLMDocQA(Expert):
    model_id = "hgq/tesseract-minilm-docqa"
    task = "document-question-answering"
    pool = "vision"
    description = ("answers a question about a document image (invoice, receipt, form, letter): Tesseract OCR, "
                   "then the text line closest to the question by all-MiniLM-L6-v2 embeddings")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return TesseractOCR.unavailable_reason() or minilm_unavailable()

    def _load(self) -> None:
        get_expert(TesseractOCR.model_id).ensure_loaded()
        minilm()

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        question = _text(inputs, "text")
        self.ensure_loaded()
        ocr = get_expert(TesseractOCR.model_id).run({"image": inputs.get("image", "")}, params)
        document = ocr.text or ""
        if not document.strip():
            raise ExpertError("no text found in the document image (OCR read nothing)")
        answer, score, top = answer_from_context(question, document)
        truncated = len(document) > OCR_CHARS
        return ExpertResult(text=answer, data={
            "score": score, "passages": top, "ocr_text": document[:OCR_CHARS], "ocr_truncated": truncated,
        })
