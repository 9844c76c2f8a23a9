"""Rule-based English <-> Spanish translation with Apertium (Debian packages apertium, apertium-eng-spa).

Apertium marks words it could not handle: ``*word`` unknown (copied from the source),
``@word`` no bilingual entry, ``#word`` no generated form. The marks are stripped from the
text and the words reported in ``data["unknown"]``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.errors import ExpertError, ModelUnavailable, TransientExpertError
from shared.outputs import ExpertResult
from workers.expert import Expert, InputValue, register
from workers.text.experts import LANGUAGE_NAMES, _text

DATA_DIR = Path("/usr/share/apertium/apertium-eng-spa")
MODES_DIR = Path("/usr/share/apertium/modes")
PAIRS = ("eng-spa", "spa-eng")
LANGUAGES = {"en": "eng", "es": "spa"}  # ISO 639-1 -> Apertium's codes
ALIASES = {
    "en": "en", "eng": "en", "english": "en", "inglés": "en", "ingles": "en", "en-us": "en", "en-gb": "en",
    "es": "es", "spa": "es", "spanish": "es", "español": "es", "espanol": "es", "castellano": "es",
    "castilian": "es", "es-es": "es", "es-mx": "es",
}  # fmt: skip
SUPPORTED = "English -> Spanish and Spanish -> English"
TIMEOUT_S = 60.0
DETECT_MIN_CHARS = 25  # language detection on shorter texts is guesswork: trust the target instead
DETECT_MIN_PROB = 0.95
_MARKED = re.compile(r"(?<!\w)([*#@])(\w[\w'-]*)")


def language_code(value: object, what: str) -> str:
    """'Spanish' / 'es' / 'spa' -> 'es'; ExpertError for languages this pair does not have."""
    name = str(value).strip().lower()
    code = ALIASES.get(name)
    if code is None:
        raise ModelUnavailable(f"apertium-eng-spa cannot translate {what} '{value}': it only does {SUPPORTED} "
                               f"({what} 'English'/'en' or 'Spanish'/'es')")
    return code


def detected_language(text: str) -> str | None:
    """langdetect's verdict when it is confident and the text long enough; else None."""
    if len(text) < DETECT_MIN_CHARS:
        return None
    from workers.expert import get_expert
    from workers.text.experts import LangDetect

    if LangDetect.unavailable_reason() is not None:
        return None
    try:
        result = get_expert(LangDetect.model_id).run({"text": text}, {})
    except ExpertError:
        return None
    top = result.labels[0]
    return top.label if top.score >= DETECT_MIN_PROB else None


def clean_marks(source: str, output: str) -> tuple[str, list[str]]:
    """Strip Apertium's *, @, # word marks (unless the source itself had them); the marked words."""
    marked: list[str] = []

    def unmark(match: re.Match[str]) -> str:
        mark, word = match.group(1), match.group(2)
        if mark == "*" and re.search(rf"(?<!\w){re.escape(word)}(?!\w)", source) is None:
            return match.group(0)  # a literal '*' before a translated word: not an unknown-word mark
        if mark in "#@" and re.search(rf"{re.escape(mark)}\w", source):
            return match.group(0)  # the source has hashtags / handles: keep them
        marked.append(word)
        return word

    lines = [re.sub(r"[ \t]{2,}", " ", _MARKED.sub(unmark, line)).strip() for line in output.splitlines()]
    return "\n".join(lines).strip(), list(dict.fromkeys(marked))


@register
class ApertiumEngSpa(Expert):
    model_id = "apertium/apertium-eng-spa"
    task = "translation"
    pool = "text"
    description = ("Apertium rule-based machine translation English <-> Spanish (offline, deterministic, fast); "
                   "param target: 'Spanish' or 'English'")
    param_choices = {"target": frozenset(ALIASES)}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if shutil.which("apertium") is None:
            return "apertium binary not found (apt-get install apertium apertium-eng-spa)"
        missing = [pair for pair in PAIRS if not (MODES_DIR / f"{pair}.mode").is_file()]
        if not DATA_DIR.is_dir() or missing:
            return f"Apertium English-Spanish data missing ({DATA_DIR}; apt-get install apertium-eng-spa)"
        return None

    def _load(self) -> None:
        for pair, word in zip(PAIRS, ("house", "casa"), strict=True):  # the pipelines really run
            try:
                self._apertium(pair, word)
            except ExpertError as exc:
                raise ModelUnavailable(f"apertium {pair} does not work: {exc}") from exc

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        text = _text(inputs)
        target = language_code(params.get("target") or "English", "target")
        if params.get("source"):
            source = language_code(params["source"], "source")
        else:
            detected = detected_language(text)
            if detected is not None and detected not in LANGUAGES:
                name = LANGUAGE_NAMES.get(detected, detected)
                # another translation model may well do this pair: not the input's fault, so the node falls back
                raise ModelUnavailable(f"the text looks like {name}; apertium-eng-spa only does {SUPPORTED}")
            source = detected or ("en" if target == "es" else "es")
        if source == target:
            return ExpertResult(text=text, data={"source": source, "target": target, "unchanged": True})
        pair = f"{LANGUAGES[source]}-{LANGUAGES[target]}"
        self.ensure_loaded()
        output = self._apertium(pair, text)
        translated, unknown = clean_marks(text, output)
        return ExpertResult(text=translated, data={"source": source, "target": target, "pair": pair,
                                                   "unknown": unknown})

    @staticmethod
    def _apertium(pair: str, text: str) -> str:
        try:
            done = subprocess.run(["apertium", "-f", "txt", pair], input=text, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise TransientExpertError(f"apertium {pair} timed out after {TIMEOUT_S:.0f}s") from exc
        except OSError as exc:
            raise ExpertError(f"apertium does not run: {exc}") from exc
        if done.returncode != 0:
            raise ExpertError(f"apertium {pair} failed (exit {done.returncode}): {done.stderr.strip()[:500]}")
        return done.stdout
