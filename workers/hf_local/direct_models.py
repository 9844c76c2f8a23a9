"""What transformers 5 no longer has a pipeline for, from the model's own classes, called like a
pipeline: seq2seq generation (summarisation, translation, text2text: T5, BART, Marian, NLLB...),
extractive question answering (BERT-style start/end logits), image captioning (BLIP, GIT,
VisionEncoderDecoder such as nlpconnect/vit-gpt2) and visual question answering (ViLT's answer
classifier, or BLIP's generated answer)."""

from __future__ import annotations

from typing import Any


class Seq2SeqGenerator:
    task = "text2text-generation"

    def __init__(self, path: str, device: str, dtype: Any):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.device = device

    def __call__(self, text: str, tgt_lang: str | None = None, max_new_tokens: int = 256,
                 **generate: Any) -> list[dict[str, str]]:
        import torch

        enc = self.tokenizer(text, return_tensors="pt", truncation=True).to(self.device)
        if tgt_lang:  # NLLB / M2M style: the target language's token starts the output
            token = self.tokenizer.convert_tokens_to_ids(tgt_lang)
            if isinstance(token, int) and token != self.tokenizer.unk_token_id:
                generate["forced_bos_token_id"] = token
        with torch.inference_mode():
            ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, **generate)
        out = str(self.tokenizer.decode(ids[0], skip_special_tokens=True)).strip()
        return [{"generated_text": out, "summary_text": out, "translation_text": out}]


class ExtractiveQA:
    task = "question-answering"

    def __init__(self, path: str, device: str, dtype: Any):
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=dtype).to(device).eval()
        self.device = device

    def __call__(self, question: str, context: str, max_answer_tokens: int = 30) -> dict[str, Any]:
        import torch

        enc = self.tokenizer(question, context, return_tensors="pt", truncation="only_second",
                             return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")[0].tolist()
        in_context = [sid == 1 for sid in enc.sequence_ids(0)]
        with torch.inference_mode():
            out = self.model(**enc.to(self.device))
        start = out.start_logits[0].float().softmax(-1).cpu()
        end = out.end_logits[0].float().softmax(-1).cpu()
        best, span = -1.0, (0, 0)
        for i in (i for i, ok in enumerate(in_context) if ok):
            for j in range(i, min(len(in_context), i + max_answer_tokens)):
                if in_context[j] and float(start[i] * end[j]) > best:
                    best, span = float(start[i] * end[j]), (i, j)
        if best < 0:
            return {"answer": "", "score": 0.0, "start": 0, "end": 0}
        first, last = offsets[span[0]][0], offsets[span[1]][1]
        return {"answer": context[first:last].strip(), "score": best, "start": first, "end": last}


def _processor(path: str) -> Any:
    """The model's processor, or its image processor and tokenizer joined (VisionEncoderDecoder folders)."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(path)
        if hasattr(processor, "image_processor") or not hasattr(processor, "decode"):
            return processor
    except (OSError, ValueError, KeyError, TypeError):
        pass
    image, tokenizer = AutoImageProcessor.from_pretrained(path), AutoTokenizer.from_pretrained(path)

    class Joined:
        def __call__(self, images: Any = None, text: Any = None, return_tensors: str = "pt") -> Any:
            out = image(images=images, return_tensors=return_tensors)
            if text is not None:
                out.update(tokenizer(text, return_tensors=return_tensors))
            return out

        def batch_decode(self, ids: Any, skip_special_tokens: bool = True) -> list[str]:
            return list(tokenizer.batch_decode(ids, skip_special_tokens=skip_special_tokens))

    return Joined()


class Captioner:
    task = "image-to-text"

    def __init__(self, path: str, device: str, dtype: Any):
        from transformers import AutoModelForImageTextToText

        self.processor = _processor(path)
        model: Any = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        self.model = model.to(device).eval()
        self.device, self.dtype = device, dtype

    def __call__(self, image: Any, max_new_tokens: int = 40, **generate: Any) -> list[dict[str, str]]:
        import torch

        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **generate)
        return [{"generated_text": self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()}]


class VisualQA:
    task = "visual-question-answering"

    def __init__(self, path: str, device: str, dtype: Any):
        from transformers import AutoModelForVisualQuestionAnswering

        self.processor = _processor(path)
        self.model = AutoModelForVisualQuestionAnswering.from_pretrained(path, dtype=dtype).to(device).eval()
        self.device, self.dtype = device, dtype

    def __call__(self, image: Any, question: str, top_k: int = 3, max_new_tokens: int = 20) -> list[dict[str, Any]]:
        import torch

        inputs = self.processor(images=image, text=question, return_tensors="pt").to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            if hasattr(self.model, "generate") and not hasattr(self.model, "classifier"):  # BLIP: writes it
                ids = self.model.generate(**inputs, max_new_tokens=max_new_tokens)
                return [{"answer": self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip(),
                         "score": 1.0}]
            probs = self.model(**inputs).logits[0].float().sigmoid().cpu()  # ViLT: a classifier over answers
        labels = self.model.config.id2label
        best = probs.topk(min(top_k, probs.numel()))
        return [{"answer": labels[int(i)], "score": float(p)} for p, i in zip(best.values, best.indices, strict=True)]
