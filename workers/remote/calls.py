"""Each task type hgq knows, as one InferenceClient call mapped onto hgq's ExpertResult.

A call gets the client (bound to a repo id or an endpoint URL), the node's resolved inputs and
its literal params. Labels, boxes and text go to their typed fields; images, audio and video come
back as media blobs (the node runner stores them as artifacts). depth-estimation has no
InferenceClient method: it is one POST of the image in the same protocol (`post_raw`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from typing import Any

from shared.catalog import CONTROLS
from shared.errors import ExpertError
from shared.outputs import Box, ExpertResult, Label, MediaBlob
from workers.expert import InputValue, Media

Call = Callable[[Any, Mapping[str, InputValue], Mapping[str, Any]], ExpertResult]
MAX_NEW_TOKENS = 512


# --- inputs ---------------------------------------------------------------------------------
def _text(inputs: Mapping[str, InputValue], slot: str = "text") -> str:
    value = inputs.get(slot)
    if not isinstance(value, str):
        raise ExpertError(f"missing text input '{slot}'")
    return value


def _media(inputs: Mapping[str, InputValue], slot: str) -> Media:
    value = inputs.get(slot)
    if not isinstance(value, Media):
        raise ExpertError(f"missing {slot} input '{slot}'")
    return value


def _payload(media: Media) -> bytes:
    """The bytes with their MIME type, which huggingface_hub sends as Content-Type."""
    try:
        from huggingface_hub.inference._common import MimeBytes
    except ImportError:  # pragma: no cover - an older or newer layout: send plain bytes
        return media.data
    return MimeBytes(media.data, media.mime)


# --- outputs --------------------------------------------------------------------------------
def _labels(items: Any) -> list[Label]:
    labels = [Label(label=str(i.label), score=float(i.score or 0.0)) for i in items]
    return sorted(labels, key=lambda lab: -lab.score)


def _labelled(items: Any) -> ExpertResult:
    labels = _labels(items)
    return ExpertResult(text=labels[0].label if labels else None, labels=labels)


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _image_blob(data: bytes, name: str) -> MediaBlob:
    return MediaBlob(data=data, mime="image/png", kind="image", name=name)


def audio_mime(data: bytes) -> str:
    """An audio MIME type from the first bytes (servers answer WAV, FLAC, OGG or MP3)."""
    if data[:4] == b"RIFF":
        return "audio/wav"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"OggS":
        return "audio/ogg"
    return "audio/mpeg"


def _audio_blob(data: bytes, name: str, mime: str | None = None) -> MediaBlob:
    mime = mime if mime and mime.startswith("audio/") else audio_mime(data)
    ext = {"audio/wav": "wav", "audio/flac": "flac", "audio/ogg": "ogg"}.get(mime, "mp3")
    return MediaBlob(data=data, mime=mime, kind="audio", name=f"{name}.{ext}")


# --- text -----------------------------------------------------------------------------------
def text_classification(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    text = _text(inputs)
    labels = [s.strip() for s in str(params.get("labels", "")).split(",") if s.strip()]
    if labels:
        return _labelled(client.zero_shot_classification(text, candidate_labels=labels))
    return _labelled(client.text_classification(text))


def token_classification(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    found = client.token_classification(_text(inputs))
    entities = [{"word": e.word, "entity": e.entity_group or e.entity, "score": float(e.score),
                 "start": e.start, "end": e.end} for e in found]
    text = ", ".join(f"{e['word']} ({e['entity']})" for e in entities) or "no entities found"
    return ExpertResult(text=text, data={"entities": entities})


def sentence_similarity(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    scores = client.sentence_similarity(_text(inputs), other_sentences=[_text(inputs, "text2")])
    score = float(scores[0])
    return ExpertResult(text=f"{score:.2f}", data={"similarity": score})


def question_answering(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    answer = client.question_answering(question=_text(inputs, "question"), context=_text(inputs))
    best = answer[0] if isinstance(answer, list) else answer
    return ExpertResult(text=best.answer, data={"score": float(best.score)})


def summarization(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    return ExpertResult(text=client.summarization(_text(inputs)).summary_text)


def translation(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    target = params.get("target")
    out = client.translation(_text(inputs), tgt_lang=str(target) if target else None)
    return ExpertResult(text=out.translation_text, data={"target": target} if target else {})


def conversational(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    out = client.chat_completion(messages=[{"role": "user", "content": _text(inputs)}], max_tokens=MAX_NEW_TOKENS)
    return ExpertResult(text=(out.choices[0].message.content or "").strip())


def text_generation(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    return ExpertResult(text=str(client.text_generation(_text(inputs), max_new_tokens=MAX_NEW_TOKENS)).strip())


# --- vision ---------------------------------------------------------------------------------
def image_to_text(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    return ExpertResult(text=client.image_to_text(_payload(_media(inputs, "image"))).generated_text)


def image_classification(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    top_k = _int(params.get("top_k"))
    return _labelled(client.image_classification(_payload(_media(inputs, "image")), top_k=top_k))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError) as exc:
        raise ExpertError(f"expected a whole number, got '{value}'") from exc


def _kinds(value: Any) -> set[str]:
    return {s.strip().lower() for s in str(value or "").split(",") if s.strip()}


def object_detection(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    image = _media(inputs, "image")
    found = client.object_detection(_payload(image))
    boxes = [Box(label=str(o.label), score=float(o.score), x=int(o.box.xmin), y=int(o.box.ymin),
                 width=int(o.box.xmax - o.box.xmin), height=int(o.box.ymax - o.box.ymin)) for o in found]
    keep = _kinds(params.get("labels"))
    boxes = sorted((b for b in boxes if not keep or b.label.lower() in keep), key=lambda b: -b.score)
    from workers.remote.drawing import draw_boxes

    text = f"{len(boxes)} object(s): " + ", ".join(f"{b.label} ({b.score:.2f})" for b in boxes) if boxes else \
        "no objects found"
    return ExpertResult(text=text, boxes=boxes, media=[_image_blob(draw_boxes(image.data, boxes), "boxes.png")])


def image_segmentation(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    image = _media(inputs, "image")
    segments = client.image_segmentation(_payload(image))
    from workers.remote.drawing import mask_and_cutout, overlay_masks

    labels = _labels(segments)
    mask, cutout, share = mask_and_cutout(image.data, [s.mask for s in segments])
    media = [_image_blob(mask, "mask.png"), _image_blob(cutout, "cutout.png"),
             _image_blob(overlay_masks(image.data, [s.mask for s in segments]), "segments.png")]
    if str(params.get("output", "mask")).lower() == "cutout":
        media[0], media[1] = media[1], media[0]
    names = ", ".join(lab.label for lab in labels)
    text = f"segments: {names} (covering {share:.0%} of the image)" if labels else "no segments found"
    return ExpertResult(text=text, labels=labels, media=media, data={"coverage": round(share, 4)})


def depth_estimation(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    from workers.remote.raw import post_raw

    if hasattr(client, "depth_estimation"):  # a local pipeline (InferenceClient has no such method)
        return ExpertResult(text="depth map of the image",
                            media=[_image_blob(client.depth_estimation(_payload(_media(inputs, "image"))), "depth.png")])
    reply = post_raw(client, "depth-estimation", _media(inputs, "image"))
    if isinstance(reply, dict):
        depth = reply.get("depth")
        if not isinstance(depth, str):
            raise ValueError("depth-estimation answer has no 'depth' image")
        data = base64.b64decode(depth.split(",", 1)[-1])
    else:
        data = reply
    return ExpertResult(text="depth map of the image", media=[_image_blob(data, "depth.png")])


def visual_question_answering(client: Any, inputs: Mapping[str, InputValue],
                              params: Mapping[str, Any]) -> ExpertResult:
    answers = client.visual_question_answering(_payload(_media(inputs, "image")), question=_text(inputs))
    best = max(answers, key=lambda a: a.score or 0.0)
    return ExpertResult(text=best.answer, data={"score": float(best.score or 0.0)})


def document_question_answering(client: Any, inputs: Mapping[str, InputValue],
                                params: Mapping[str, Any]) -> ExpertResult:
    answers = client.document_question_answering(_payload(_media(inputs, "image")), question=_text(inputs))
    best = max(answers, key=lambda a: a.score or 0.0)
    return ExpertResult(text=best.answer, data={"score": float(best.score or 0.0)})


def text_to_image(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    prompt = _text(inputs)
    return ExpertResult(text=f"image of: {prompt[:200]}", media=[_image_blob(_png(client.text_to_image(prompt)),
                                                                             "generated.png")])


def image_to_image(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    prompt = inputs.get("text") if isinstance(inputs.get("text"), str) else params.get("style")
    out = client.image_to_image(_payload(_media(inputs, "image")), prompt=str(prompt) if prompt else None)
    return ExpertResult(text="transformed image", media=[_image_blob(_png(out), "image.png")])


def seg_control(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    image = _media(inputs, "image")
    segments = client.image_segmentation(_payload(image))
    from workers.remote.drawing import segment_map

    names = ", ".join(str(s.label) for s in segments)
    return ExpertResult(text=f"segment map: {names}" if names else "segment map (no segments found)",
                        labels=_labels(segments), media=[_image_blob(segment_map(image.data, segments), "seg.png")])


def control_text_to_image(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    """X-text-to-image: a ControlNet draws the description laid out like the control map."""
    prompt = _text(inputs)
    out = client.image_to_image(_payload(_media(inputs, "image")), prompt=prompt)
    return ExpertResult(text=f"image of: {prompt[:200]}", media=[_image_blob(_png(out), "generated.png")])


def video_mime(data: bytes) -> tuple[str, str]:
    """(MIME type, extension) of a video from its first bytes: WebM (EBML) or else MP4."""
    return ("video/webm", "webm") if data[:4] == b"\x1a\x45\xdf\xa3" else ("video/mp4", "mp4")


def text_to_video(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    prompt = _text(inputs)
    data = bytes(client.text_to_video(prompt))
    mime, ext = video_mime(data)
    return ExpertResult(text=f"video of: {prompt[:200]}",
                        media=[MediaBlob(data=data, mime=mime, kind="video", name=f"generated.{ext}")])


# --- audio ----------------------------------------------------------------------------------
def automatic_speech_recognition(client: Any, inputs: Mapping[str, InputValue],
                                 params: Mapping[str, Any]) -> ExpertResult:
    return ExpertResult(text=client.automatic_speech_recognition(_payload(_media(inputs, "audio"))).text.strip())


def text_to_speech(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    text = _text(inputs)
    return ExpertResult(text=text, media=[_audio_blob(bytes(client.text_to_speech(text)), "speech")])


def audio_classification(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    return _labelled(client.audio_classification(_payload(_media(inputs, "audio"))))


def audio_to_audio(client: Any, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
    outs = client.audio_to_audio(_payload(_media(inputs, "audio")))
    media = [_audio_blob(bytes(o.blob), f"{o.label or 'audio'}-{i}".replace("/", "_"), o.content_type)
             for i, o in enumerate(outs)]
    return ExpertResult(text=", ".join(str(o.label) for o in outs) or "audio", media=media)


CALLS: dict[str, Call] = {
    "text-classification": text_classification,
    "language-detection": lambda c, i, p: _labelled(c.text_classification(_text(i))),
    "token-classification": token_classification,
    "sentence-similarity": sentence_similarity,
    "question-answering": question_answering,
    "summarization": summarization,
    "translation": translation,
    "conversational": conversational,
    "text-generation": text_generation,
    "text2text-generation": text_generation,
    "image-to-text": image_to_text,
    "image-classification": image_classification,
    "object-detection": object_detection,
    "image-segmentation": image_segmentation,
    "depth-estimation": depth_estimation,
    "visual-question-answering": visual_question_answering,
    "document-question-answering": document_question_answering,
    "text-to-image": text_to_image,
    "image-to-image": image_to_image,
    "text-to-video": text_to_video,
    "depth-control": depth_estimation,
    "seg-control": seg_control,
    **{f"{name}-text-to-image": control_text_to_image for name in CONTROLS},
    "automatic-speech-recognition": automatic_speech_recognition,
    "text-to-speech": text_to_speech,
    "audio-classification": audio_classification,
    "audio-to-audio": audio_to_audio,
}
