"""A transformers pipeline behind the InferenceClient methods hgq's calls use (workers/remote/calls.py),
so one mapping turns remote answers and local pipeline outputs alike into hgq's typed outputs.

Inputs arrive as bytes (images, audio) and are decoded here; outputs are the pipeline's dicts,
readable by attribute like huggingface_hub's output dataclasses (a missing field reads None).
Summarisation, translation, text2text generation, extractive QA, captioning and VQA run through
the model's own classes where the installed transformers has no pipeline for them (transformers 5
removed those: direct_models.py).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from typing import Any

from shared.errors import ExpertError
from workers.hf_local.direct_models import Captioner, ExtractiveQA, Seq2SeqGenerator, VisualQA


class Fields:
    """A dict read by attribute; a missing key reads None (like an optional dataclass field)."""

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._values.get(name)


def fields(value: Any) -> Any:
    if isinstance(value, dict):
        return Fields({k: fields(v) for k, v in value.items()})
    if isinstance(value, list):
        return [fields(v) for v in value]
    return value


def _image(data: bytes) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data)).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ExpertError(f"cannot read the image: {exc}") from exc


def _first(out: Any) -> Any:
    """A single input's answer: pipelines wrap it in one (sometimes two) lists."""
    while isinstance(out, list) and len(out) == 1 and isinstance(out[0], (list, dict)):
        out = out[0]
    return out


def _listed(out: Any) -> list[Any]:
    out = _first(out)
    return out if isinstance(out, list) else [out]


def wav_bytes(samples: Any, rate: int) -> bytes:
    import wave

    import numpy as np

    pcm = (np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(pcm.tobytes())
    return buf.getvalue()


def supported_pipelines() -> set[str]:
    from transformers.pipelines import SUPPORTED_TASKS, TASK_ALIASES

    return set(SUPPORTED_TASKS) | set(TASK_ALIASES)


FALLBACKS = {"summarization": Seq2SeqGenerator, "translation": Seq2SeqGenerator,
             "text2text-generation": Seq2SeqGenerator, "question-answering": ExtractiveQA,
             "image-to-text": Captioner, "visual-question-answering": VisualQA}


def load_pipeline(task: str, path: str, device: str, dtype: Any, batch_size: int) -> Any:
    import transformers

    if task not in supported_pipelines():
        fallback = FALLBACKS.get(task)
        if fallback is None:
            raise ExpertError(f"transformers {transformers.__version__} has no pipeline '{task}'")
        return fallback(path, device, dtype)
    make: Any = transformers.pipeline  # its overloads name each task as a literal
    return make(task, model=path, device=device, dtype=dtype, batch_size=batch_size)


class PipelineClient:
    """InferenceClient-shaped calls over one loaded pipeline; `options` go to every call."""

    def __init__(self, pipe: Any, options: dict[str, Any] | None = None):
        self.pipe = pipe
        self.options = dict(options or {})
        self._lock = threading.Lock()  # one call at a time per model (a worker thread pool shares it)

    def _call(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self.pipe(*args, **{**kwargs, **self.options})

    def _audio(self, data: bytes) -> dict[str, Any]:
        from workers.audio.experts import decode_at
        from workers.expert import Media

        rate = int(getattr(getattr(self.pipe, "feature_extractor", None), "sampling_rate", 16000) or 16000)
        return {"raw": decode_at(Media(data=bytes(data), mime="audio/*"), rate), "sampling_rate": rate}

    # --- text ----------------------------------------------------------------------------------
    def text_classification(self, text: str) -> list[Any]:
        return fields(_listed(self._call(text, top_k=None)))

    def zero_shot_classification(self, text: str, candidate_labels: Sequence[str]) -> list[Any]:
        if getattr(self.pipe, "task", "") != "zero-shot-classification":
            raise ExpertError("this model has its own fixed labels; it cannot sort into given labels "
                              "(declare a zero-shot-classification pipeline for that)")
        out = self._call(text, candidate_labels=list(candidate_labels))
        return [Fields({"label": lab, "score": s}) for lab, s in zip(out["labels"], out["scores"], strict=False)]

    def token_classification(self, text: str) -> list[Any]:
        return fields(_listed(self._call(text, aggregation_strategy="simple")) if text.strip() else [])

    def sentence_similarity(self, text: str, other_sentences: Sequence[str]) -> list[float]:
        import numpy as np

        def vector(s: str) -> Any:
            arr = np.asarray(self._call(s), dtype=np.float32)
            return arr.reshape(-1, arr.shape[-1]).mean(axis=0)

        a = vector(text)
        out = []
        for other in other_sentences:
            b = vector(other)
            out.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9)))
        return out

    def question_answering(self, question: str, context: str) -> Any:
        return fields(_first(self._call(question=question, context=context)))

    def summarization(self, text: str) -> Any:
        return fields(_first(self._call(text)))

    def translation(self, text: str, tgt_lang: str | None = None) -> Any:
        return fields(_first(self._call(text, **({"tgt_lang": tgt_lang} if tgt_lang else {}))))

    def text_generation(self, prompt: str, max_new_tokens: int = 256) -> str:
        causal = getattr(self.pipe, "task", "") == "text-generation"  # a seq2seq model writes only the answer
        out = _first(self._call(prompt, max_new_tokens=max_new_tokens, **({"return_full_text": False} if causal else {})))
        return str(out.get("generated_text", "") if isinstance(out, dict) else out)

    def chat_completion(self, messages: list[dict[str, str]], max_tokens: int = 256) -> Any:
        out = _first(self._call(messages, max_new_tokens=max_tokens))
        reply = out.get("generated_text") if isinstance(out, dict) else out
        if isinstance(reply, list):  # the whole conversation: the last message is the reply
            reply = reply[-1].get("content", "") if reply and isinstance(reply[-1], dict) else ""
        return Fields({"choices": [Fields({"message": Fields({"content": str(reply or "")})})]})

    # --- vision --------------------------------------------------------------------------------
    def image_to_text(self, image: bytes) -> Any:
        return fields(_first(self._call(_image(image))))

    def image_classification(self, image: bytes, top_k: int | None = None) -> list[Any]:
        return fields(_listed(self._call(_image(image), **({"top_k": top_k} if top_k else {}))))

    def object_detection(self, image: bytes) -> list[Any]:
        return fields(_listed(self._call(_image(image))) if image else [])

    def image_segmentation(self, image: bytes) -> list[Any]:
        return fields([s for s in _listed(self._call(_image(image))) if isinstance(s, dict)])

    def depth_estimation(self, image: bytes) -> bytes:
        out = _first(self._call(_image(image)))
        buf = io.BytesIO()
        out["depth"].save(buf, format="PNG")
        return buf.getvalue()

    def visual_question_answering(self, image: bytes, question: str) -> list[Any]:
        return fields(_listed(self._call(image=_image(image), question=question)))

    def document_question_answering(self, image: bytes, question: str) -> list[Any]:
        return fields(_listed(self._call(image=_image(image), question=question)))

    # --- audio ---------------------------------------------------------------------------------
    def automatic_speech_recognition(self, audio: bytes) -> Any:
        return fields(_first(self._call(self._audio(audio))))

    def audio_classification(self, audio: bytes) -> list[Any]:
        return fields(_listed(self._call(self._audio(audio))))

    def text_to_speech(self, text: str) -> bytes:
        out = _first(self._call(text))
        return wav_bytes(out["audio"], out["sampling_rate"])
