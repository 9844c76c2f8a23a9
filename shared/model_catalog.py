"""Catalogue of known models, for ranking the candidates of a task (model selection, stage 2).

Two sources:

* `shared/data/hf_models.jsonl`: HuggingGPT's model catalogue (`p0_models.jsonl` of the
  HuggingGPT / JARVIS repository, 673 Hugging Face models, 24 task types), trimmed to id, task,
  likes, downloads and a cleaned description of at most ~600 characters (see `trim_p0`;
  rebuild with `python -m shared.model_catalog --trim SRC [DST]`).
* `LOCAL_MODELS` below: the models hgq's own workers serve offline (likes/downloads unknown: 0).

`rank(models, request_text)` orders a task's live candidates by popularity (likes and downloads,
log-scaled, relative to the best candidate) plus the word overlap between the request and the
model's description; ties go to local models (no network, no cost), then to the id.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel

from shared.registry import ServedModel

DATA_FILE = Path(__file__).resolve().parent / "data" / "hf_models.jsonl"
# run by a worker here, no network call (python, transformers, diffusers: HGQ_MODELS_FILE)
LOCAL_BACKENDS = frozenset({"local", "python", "transformers", "diffusers"})
SIMILARITY_WEIGHT = 2.0  # a full word overlap outweighs the most popular candidate's popularity
DESCRIPTION_CHARS = 600


class CatalogEntry(BaseModel):
    id: str
    task: str
    likes: int = 0
    downloads: int = 0
    description: str = ""
    local: bool = False  # one of hgq's own offline models


LOCAL_MODELS: list[CatalogEntry] = [
    CatalogEntry(id=i, task=t, description=d, local=True)
    for i, t, d in [
        ("cjhutto/vaderSentiment", "text-classification",
         "VADER lexicon and rule based sentiment analysis for English text: positive, negative or neutral "
         "polarity scores; tuned for social media, reviews and short messages. Runs offline, instantly."),
        ("Mimino666/langdetect", "language-detection",
         "langdetect, a port of Google's language-detection library: naive Bayes on character n-grams, "
         "identifies which of 55 languages a text is written in. Deterministic, offline."),
        ("summa/textrank", "summarization",
         "TextRank extractive summarization: keeps the most central sentences of a long text or document "
         "(graph ranking of sentences). Fast, offline, never invents content."),
        ("tesseract-ocr/tesseract-eng", "image-to-text",
         "Tesseract 5 LSTM optical character recognition (OCR) for English: reads printed text in images, "
         "scanned documents, receipts, screenshots and signs."),
        ("hgq/pillow-image-filters", "image-to-image",
         "Non-neural image transforms with Pillow: grayscale (black and white), canny edge map, pencil sketch, "
         "stylize, sepia and invert filters applied to a photo or picture."),
        ("Systran/faster-whisper-base", "automatic-speech-recognition",
         "OpenAI Whisper base converted to CTranslate2 (faster-whisper, int8): multilingual automatic speech "
         "recognition, transcribes speech audio recordings to text in about 100 languages."),
        ("rhasspy/piper-voices:en_US-joe-medium", "text-to-speech",
         "Piper VITS neural text-to-speech voice en_US joe (medium quality): reads English text aloud as "
         "natural speech, 22.05 kHz WAV audio. Offline."),
        ("snakers4/silero-vad", "audio-classification",
         "Silero voice activity detection (speech or not) plus Whisper spoken language identification: "
         "classifies an audio recording as speech or silence or noise and names its language."),
        ("sentence-transformers/all-MiniLM-L6-v2", "sentence-similarity",
         "all-MiniLM-L6-v2 sentence embeddings: how similar in meaning two sentences or paragraphs are "
         "(cosine similarity, -1..1); semantic search and paraphrase detection. Offline."),
        ("sentence-transformers/all-MiniLM-L6-v2:zero-shot", "text-classification",
         "Zero-shot text classification with MiniLM sentence embeddings: labels a text with any given candidate "
         "labels or categories or topics (sports, politics, finance ...), no training needed. Offline."),
        ("sentence-transformers/all-MiniLM-L6-v2:retrieval-qa", "question-answering",
         "Extractive question answering by retrieval: MiniLM embeddings find the sentence of the context that "
         "answers the question best. Offline, fast, quotes the context verbatim."),
        ("spacy/en_core_web_sm", "token-classification",
         "spaCy en_core_web_sm named entity recognition (NER) for English: people, places, organisations, dates, "
         "money and other entities with their character offsets. Offline."),
        ("apertium/apertium-eng-spa", "translation",
         "Apertium rule-based machine translation between English and Spanish, both directions. Offline, "
         "deterministic, literal; only English <-> Spanish."),
        ("hgq/tesseract-minilm-docqa", "document-question-answering",
         "Document question answering: Tesseract OCR reads the document image (invoice, receipt, letter, form), "
         "then MiniLM retrieval picks the line that answers the question. Offline."),
        ("torchvision/mobilenet_v2", "image-classification",
         "MobileNetV2 image classification trained on ImageNet-1k: names what a photo shows among 1000 classes "
         "(animals like cats and dogs, objects, food, vehicles) with scores. Offline, fast on CPU."),
        ("google/mediapipe-face-person-detection", "object-detection",
         "MediaPipe face detection and pose-based person detection: boxes around faces and people in a photo, "
         "drawn on the image. Only faces and people, no other objects. Offline."),
        ("google/mediapipe-person-segmentation", "image-segmentation",
         "MediaPipe person segmentation: mask and cut-out of the people in a photo (background removal for "
         "portraits), with the share of the image they cover. Offline."),
        ("rembg/u2netp", "image-segmentation",
         "U^2-Net (u2netp) salient object segmentation: mask and cut-out of the main subject or object of an "
         "image (background removal for products, animals, objects). Offline."),
        ("google/mediapipe-pose", "image-to-image",
         "MediaPipe pose estimation drawn as an OpenPose-style skeleton (pose map, openpose control image) of "
         "the people in a photo, on black. Offline."),
        ("opencv/image-filters", "image-to-image",
         "OpenCV image transforms: canny edges, pencil sketch, color sketch, stylization, cartoon, detail "
         "enhancement and grayscale of a photo or picture. Offline, fast."),
        ("hgq/canny-control", "canny-control",
         "ControlNet canny control image: the OpenCV Canny edge map of a photo, white outlines on black, "
         "for canny-text-to-image. Offline, fast."),
        ("hgq/openpose-control", "openpose-control",
         "ControlNet openpose control image: the body skeletons of the people in a photo (MediaPipe BlazePose) "
         "drawn in OpenPose colours on black, for openpose-text-to-image. Offline."),
        ("llm/summarization", "summarization",
         "The controller LLM writes an abstractive summary: fluent, concise, rephrased in its own words, "
         "can follow a requested length or style."),
        ("llm/translation", "translation",
         "The controller LLM translates text between languages (English, French, German, Spanish, Italian, "
         "Chinese and more) to the requested target language."),
        ("llm/conversational", "conversational",
         "The controller LLM replies to a message in a chat conversation: helpful, friendly dialogue response."),
        ("llm/text-generation", "text-generation",
         "The controller LLM writes or continues text from a prompt: stories, poems, descriptions, emails."),
        ("llm/text2text-generation", "text2text-generation",
         "The controller LLM rewrites text following an instruction: paraphrase, correct grammar, change tone "
         "or format, simplify."),
        ("llm/question-answering", "question-answering",
         "The controller LLM answers a question from a given context text (extractive or abstractive answer)."),
    ]
]


# --- loading -----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _catalog() -> dict[str, CatalogEntry]:
    entries: dict[str, CatalogEntry] = {}
    if DATA_FILE.exists():
        with DATA_FILE.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    entry = CatalogEntry.model_validate_json(line)
                    entries[entry.id] = entry
    for entry in LOCAL_MODELS:  # a local model also on the Hub keeps the Hub's popularity
        hub = entries.get(entry.id)
        entries[entry.id] = entry if hub is None else entry.model_copy(
            update={"likes": hub.likes, "downloads": hub.downloads})
    return entries


def catalog_entry(model_id: str) -> CatalogEntry | None:
    """The catalogue's entry for a model id (Hugging Face repo id or hgq local id), or None."""
    return _catalog().get(model_id)


def entries(task: str | None = None) -> list[CatalogEntry]:
    return [e for e in _catalog().values() if task is None or e.task == task]


# --- ranking -----------------------------------------------------------------------------------
_STOP = frozenset(["a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out", "over", "own", "please", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "model", "models", "use", "used", "using", "text", "file", "files", "want", "need", "like", "make", "get", "give", "tell"])
_WORD = re.compile(r"[a-z0-9]+")


def _stem(word: str) -> str:
    """A crude stemmer: plural, then one derivational suffix ("summaries" ~ "summarise" ~ "summarization")."""
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        word = word[:-1]
    word = re.sub(r"is(e|ed|ing)$", r"iz\1", word)  # British spelling
    for suffix in ("ization", "ation", "izing", "ized", "ize", "ing", "ed", "y", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def words(text: str) -> set[str]:
    """Content words of a text, lowercased and crudely stemmed ("summarise" ~ "summarization")."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOP}


@lru_cache(maxsize=1)
def _document_frequency() -> tuple[int, dict[str, int]]:
    df: dict[str, int] = {}
    docs = list(_catalog().values())
    for entry in docs:
        for word in words(f"{entry.id} {entry.task} {entry.description}"):
            df[word] = df.get(word, 0) + 1
    return len(docs), df


def idf(word: str) -> float:
    """Inverse document frequency over the catalogue: rare words ("financial") weigh more than "sentiment"."""
    n, df = _document_frequency()
    return math.log((n + 1) / (df.get(word, 0) + 1)) + 1.0


def similarity(request_text: str, description: str) -> float:
    """Word overlap in [0, 1]: the idf-weighted share of the request's words the description contains."""
    a, b = words(request_text), words(description)
    total = sum(idf(w) for w in a)
    if not total or not b:
        return 0.0
    return sum(idf(w) for w in a & b) / total


def _popularity(entry: CatalogEntry | None) -> tuple[float, float]:
    if entry is None:
        return 0.0, 0.0
    return math.log10(1 + max(entry.likes, 0)), math.log10(1 + max(entry.downloads, 0))


def describe(model: ServedModel) -> str:
    """What a model is known by for word overlap: its id, catalogue description and own description."""
    entry = catalog_entry(model.model_id)
    parts = [model.model_id.replace("/", " ").replace("-", " ").replace("_", " ")]
    if entry is not None and entry.description:
        parts.append(entry.description)
    if model.description:
        parts.append(model.description)
    return " ".join(parts)


def scores(models: Iterable[ServedModel], request_text: str) -> list[tuple[ServedModel, float]]:
    """Each model with its score: relative popularity in [0, 1] + SIMILARITY_WEIGHT * word overlap."""
    models = list(models)
    pops = [_popularity(catalog_entry(m.model_id)) for m in models]
    max_likes = max((p[0] for p in pops), default=0.0)
    max_downloads = max((p[1] for p in pops), default=0.0)
    out: list[tuple[ServedModel, float]] = []
    for model, (likes, downloads) in zip(models, pops, strict=False):
        pop = 0.5 * (likes / max_likes if max_likes else 0.0) + 0.5 * (downloads / max_downloads if max_downloads else 0.0)
        out.append((model, pop + SIMILARITY_WEIGHT * similarity(request_text, describe(model))))
    return out


def is_local(model: ServedModel) -> bool:
    return model.backend in LOCAL_BACKENDS


def ranked_scores(models: Iterable[ServedModel], request_text: str) -> list[tuple[ServedModel, float]]:
    """Each model with its score, best first; on ties local models first, then by id."""
    scored = scores(models, request_text)
    scored.sort(key=lambda ms: (-round(ms[1], 9), not is_local(ms[0]), ms[0].model_id))
    return scored


def rank(models: list[ServedModel], request_text: str) -> list[ServedModel]:
    """Best first: popularity + similarity to the request; on ties local models first, then by id."""
    return [m for m, _ in ranked_scores(models, request_text)]


# --- building the data file --------------------------------------------------------------------
def clean_description(markdown: str, limit: int = DESCRIPTION_CHARS) -> str:
    """A model card's markdown as plain prose: no code, links, images, html, tables or headings."""
    text = re.sub(r"```.*?(```|$)", " ", markdown or "", flags=re.DOTALL)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.DOTALL)
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"https?://\S+", " ", text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"^\s*#+\s*", "", text, flags=re.MULTILINE)
    text = re.sub(r"[*_]{1,3}([^*_]+)[*_]{1,3}", r"\1", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text


def trim_p0(src: Path, dst: Path = DATA_FILE) -> int:
    """Write HuggingGPT's p0_models.jsonl as the trimmed catalogue file; returns the entry count."""
    rows: list[str] = []
    with open(src, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            raw = json.loads(line)
            entry = CatalogEntry(id=raw["id"], task=raw.get("task") or raw.get("pipeline_tag") or "",
                                 likes=int(raw.get("likes") or 0), downloads=int(raw.get("downloads") or 0),
                                 description=clean_description(raw.get("description") or ""))
            rows.append(entry.model_dump_json(exclude={"local"}))
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return len(rows)


if __name__ == "__main__":  # python -m shared.model_catalog --trim path/to/p0_models.jsonl [DST]
    if len(sys.argv) >= 3 and sys.argv[1] == "--trim":
        count = trim_p0(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else DATA_FILE)
        print(f"{count} entries written")
    else:
        print("usage: python -m shared.model_catalog --trim SRC [DST]", file=sys.stderr)
        sys.exit(2)
