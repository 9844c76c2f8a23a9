"""Text experts, offline: VADER sentiment, langdetect language id, TextRank summaries."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from shared.errors import ExpertError
from shared.outputs import ExpertResult, Label
from workers.expert import Expert, InputValue, register

MAX_CHARS = 200_000


def _text(inputs: Mapping[str, InputValue], slot: str = "text") -> str:
    value = inputs.get(slot)
    if not isinstance(value, str) or not value.strip():
        raise ExpertError(f"input '{slot}' must be a non-empty text")
    if len(value) > MAX_CHARS:
        raise ExpertError(f"input '{slot}' too long ({len(value)} characters, max {MAX_CHARS})")
    return value.strip()


def _missing(module: str, pip_name: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"python package {module} not installed (pip install {pip_name})"
    return None


# --- sentiment -------------------------------------------------------------------------------

SENTIMENTS = ("positive", "negative", "neutral")


def sentiment_scores(compound: float, threshold: float = 0.05) -> dict[str, float]:
    """Map VADER's compound score (-1..1) to label scores summing to 1, top = VADER's verdict."""
    strength = abs(compound)
    side = "positive" if compound >= 0 else "negative"
    other = "negative" if side == "positive" else "positive"
    if strength >= threshold:
        return {side: 0.5 + strength / 2, "neutral": 0.5 - strength / 2, other: 0.0}
    return {"neutral": 1.0 - strength, side: strength, other: 0.0}


@register
class VaderSentiment(Expert):
    model_id = "cjhutto/vaderSentiment"
    task = "text-classification"
    pool = "text"
    description = "VADER lexicon sentiment (English): positive / negative / neutral"
    param_choices = {"labels": frozenset(SENTIMENTS)}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _missing("vaderSentiment", "vaderSentiment==3.3.2")

    def _load(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        text = _text(inputs)
        wanted = [w.strip().lower() for w in str(params.get("labels") or "").split(",") if w.strip()]
        if wanted and not set(wanted) <= set(SENTIMENTS):
            raise ExpertError(f"{self.model_id} only labels sentiment ({', '.join(SENTIMENTS)}), not {wanted}")
        self.ensure_loaded()
        raw = self._analyzer.polarity_scores(text)
        scores = sentiment_scores(float(raw["compound"]))
        keep = wanted or list(SENTIMENTS)
        labels = sorted(
            (Label(label=name, score=round(scores[name], 4)) for name in keep), key=lambda lab: lab.score, reverse=True
        )
        return ExpertResult(text=labels[0].label, labels=labels, data={"vader": raw})


# --- language identification -------------------------------------------------------------------

LANGUAGE_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech",
    "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "et": "Estonian", "fa": "Persian", "fi": "Finnish", "fr": "French", "gu": "Gujarati", "he": "Hebrew",
    "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kn": "Kannada", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam",
    "mr": "Marathi", "ne": "Nepali", "nl": "Dutch", "no": "Norwegian", "pa": "Punjabi", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "so": "Somali",
    "sq": "Albanian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai",
    "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
    "zh-cn": "Chinese (simplified)", "zh-tw": "Chinese (traditional)",
}  # fmt: skip


@register
class LangDetect(Expert):
    model_id = "Mimino666/langdetect"
    task = "language-detection"
    pool = "text"
    description = "langdetect (naive Bayes on character n-grams, 55 languages), seeded: deterministic"

    seed = 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _missing("langdetect", "langdetect==1.0.9")

    def _load(self) -> None:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

        factory = DetectorFactory()  # a private factory: the module-global one is shared state
        factory.load_profile(PROFILES_DIRECTORY)
        factory.set_seed(self.seed)
        self._factory = factory

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        from langdetect.lang_detect_exception import LangDetectException

        text = _text(inputs)
        self.ensure_loaded()
        detector = self._factory.create()
        detector.append(text)
        try:
            ranked = detector.get_probabilities()
        except LangDetectException as exc:
            raise ExpertError(f"cannot tell the language of this text: {exc}") from exc
        labels = [Label(label=lang.lang, score=round(float(lang.prob), 4)) for lang in ranked[:3]]
        code = labels[0].label
        name = LANGUAGE_NAMES.get(code, code)
        return ExpertResult(text=name, labels=labels, data={"language": code, "name": name})


# --- extractive summary ---------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    from summa.preprocessing.textcleaner import split_sentences as summa_split

    return [s.strip() for s in summa_split(text) if s.strip()]


@register
class TextRankSummarizer(Expert):
    model_id = "summa/textrank"
    task = "summarization"
    pool = "text"
    description = "TextRank extractive summary (keeps the most central sentences); offline fallback to an LLM"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _missing("summa", "summa==1.2.0")

    def _load(self) -> None:
        import summa.summarizer  # noqa: F401 - pulls in scipy/numpy once, at load

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        from summa.summarizer import summarize

        text = _text(inputs)
        language = str(params.get("language") or "english").lower()
        sentences = split_sentences(text) or [text]
        n = len(sentences)
        want = int(params.get("sentences") or max(1, min(5, round(n * 0.3))))
        if n <= want:
            # Too short to extract from: keep the first sentence (or the text when it is one sentence).
            chosen, method = sentences[:1] if n > 1 else sentences, "lead"
        else:
            try:
                picked = summarize(text, ratio=want / n, language=language, split=True)
            except (ValueError, KeyError, ZeroDivisionError) as exc:
                raise ExpertError(f"summarizer failed: {exc}") from exc
            chosen, method = ([s.strip() for s in picked if s.strip()][:want], "textrank")
            if not chosen:
                chosen, method = sentences[:want], "lead"
        summary = " ".join(chosen)
        return ExpertResult(text=summary, data={"method": method, "sentences": len(chosen), "of": n})
