"""Task types hgq knows: which pool runs them, what they take and what they produce.

A task type is only *planned* when a live worker serves it (see shared/registry.py); this
catalogue is the static contract that plans are validated against.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

ValueKind = Literal["text", "image", "audio", "video"]
Pool = Literal["text", "vision", "audio"]


class Slot(BaseModel):
    kind: ValueKind
    required: bool = True
    doc: str = ""


class TaskType(BaseModel):
    name: str
    pool: Pool
    inputs: dict[str, Slot]
    produces: frozenset[ValueKind]
    description: str
    params: dict[str, str] = Field(default_factory=dict)  # literal parameters: name -> doc
    diagnostic: bool = False

    def line(self) -> str:
        ins = ", ".join(f"{n}:{s.kind}{'' if s.required else '?'}{f' ({s.doc})' if s.doc else ''}"
                        for n, s in self.inputs.items())
        outs = "+".join(sorted(self.produces))
        extra = "; ".join(f"{name}: {doc}" for name, doc in self.params.items())
        return f"{self.name}({ins}) -> {outs}: {self.description}" + (f" [optional args: {extra}]" if extra else "")


def _t(name: str, pool: Pool, inputs: dict[str, Slot], produces: set[str], description: str, **kw: Any) -> TaskType:
    return TaskType(name=name, pool=pool, inputs=inputs, produces=frozenset(produces), description=description, **kw)


# ControlNet control kinds (HuggingGPT's lllyasviel/sd-controlnet-* family) -> what the map shows
CONTROLS = {
    "canny": "canny edges",
    "openpose": "OpenPose body skeletons of the people",
    "depth": "depth, near bright and far dark",
    "hed": "soft HED edges",
    "seg": "semantic segments, one colour per class",
}

TEXT = Slot(kind="text")
IMAGE = Slot(kind="image")
AUDIO = Slot(kind="audio")

_DIAG_INPUTS = {
    "text": Slot(kind="text", required=False),
    "text2": Slot(kind="text", required=False),
    "text3": Slot(kind="text", required=False),
}
_DIAG_PARAMS = {
    "seconds": "how long the node sleeps",
    "fail": "'permanent' | 'transient' (fails once per `key`, then succeeds) | 'always-transient'",
    "key": "identifies a transient failure across retries",
    "name": "label echoed in the output",
}

TASK_TYPES: dict[str, TaskType] = {
    t.name: t
    for t in [
        # --- text pool -------------------------------------------------------------------
        _t("text-classification", "text", {"text": TEXT}, {"text"}, "label a text (sentiment or given labels)",
           params={"labels": "comma-separated candidate labels (zero-shot)"}),
        _t("token-classification", "text", {"text": TEXT}, {"text"}, "named entities in a text"),
        _t("sentence-similarity", "text", {"text": TEXT, "text2": Slot(kind="text", doc="the other text")}, {"text"}, "similarity score of two texts"),
        _t("question-answering", "text", {"text": Slot(kind="text", doc="the context"), "question": TEXT}, {"text"},
           "answer a question from a context text"),
        _t("summarization", "text", {"text": TEXT}, {"text"}, "summarise a text"),
        _t("translation", "text", {"text": TEXT}, {"text"}, "translate a text",
           params={"target": "target language, e.g. 'French' (default English)"}),
        _t("conversational", "text", {"text": TEXT}, {"text"}, "reply to a message"),
        _t("text-generation", "text", {"text": TEXT}, {"text"}, "continue or write text from a prompt"),
        _t("text2text-generation", "text", {"text": TEXT}, {"text"}, "rewrite text following an instruction",
           params={"instruction": "what to do with the text, e.g. 'rewrite as a formal email'"}),
        _t("language-detection", "text", {"text": TEXT}, {"text"}, "which language a text is in"),
        # --- vision pool -----------------------------------------------------------------
        _t("image-to-text", "vision", {"image": IMAGE}, {"text"}, "read the text in an image (OCR)"),
        _t("image-classification", "vision", {"image": IMAGE}, {"text"}, "what an image shows (ImageNet labels)",
           params={"top_k": "how many labels to return (default 5)"}),
        _t("object-detection", "vision", {"image": IMAGE}, {"text", "image"},
           "find objects (boxes) and draw them on the image (the local model finds only faces and people)",
           params={"labels": "comma-separated kinds to keep, e.g. 'person' or 'face,person'"}),
        _t("image-segmentation", "vision", {"image": IMAGE}, {"image", "text"},
           "mask and cut-out of the main subject (people, or the salient object) and the share of the image it covers",
           params={"output": "mask|cutout: which image comes first (default mask)"}),
        _t("depth-estimation", "vision", {"image": IMAGE}, {"image"}, "depth map of an image"),
        _t("visual-question-answering", "vision", {"image": IMAGE, "text": Slot(kind="text", doc="the question")}, {"text"},
           "answer a question about an image"),
        _t("document-question-answering", "vision", {"image": IMAGE, "text": Slot(kind="text", doc="the question")}, {"text"},
           "answer a question about a document image"),
        _t("text-to-image", "vision", {"text": TEXT}, {"image"}, "generate an image from a description"),
        _t("image-to-image", "vision", {"image": IMAGE, "text": Slot(kind="text", required=False)}, {"image"},
           "transform an image (edges, sketch, stylise, grayscale, OpenPose-style pose map of the people)",
           params={"style": "canny|sketch|stylize|gray|pose"}),
        _t("text-to-video", "vision", {"text": TEXT}, {"video"}, "generate a short video clip from a description"),
        # ControlNet, as HuggingGPT names it: X-control makes a control map of an image, X-text-to-image
        # draws a new image from a description that follows such a map (or a photo, mapped first)
        *(_t(f"{name}-control", "vision", {"image": IMAGE}, {"image"}, f"ControlNet control map of an image: {what}")
          for name, what in CONTROLS.items()),
        *(_t(f"{name}-text-to-image", "vision",
             {"image": Slot(kind="image", doc=f"the {name} control map (from {name}-control)"),
              "text": Slot(kind="text", doc="what to draw")}, {"image"},
             f"generate an image from a description, laid out like the {name} control map ({what})")
          for name, what in CONTROLS.items()),
        # --- audio pool ------------------------------------------------------------------
        _t("automatic-speech-recognition", "audio", {"audio": AUDIO}, {"text"}, "transcribe speech to text"),
        _t("text-to-speech", "audio", {"text": TEXT}, {"audio"}, "read a text aloud (speech audio)"),
        _t("audio-classification", "audio", {"audio": AUDIO}, {"text"}, "speech or not, and spoken language"),
        _t("audio-to-audio", "audio", {"audio": AUDIO}, {"audio"}, "transform audio (enhance, separate)"),
        # --- diagnostics (only offered when HGQ_DIAGNOSTICS is on) -------------------------
        _t("diag-text", "text", _DIAG_INPUTS, {"text"},
           "sleep, then echo the inputs", params=_DIAG_PARAMS, diagnostic=True),
        _t("diag-vision", "vision", _DIAG_INPUTS, {"text"},
           "sleep, then echo the inputs", params=_DIAG_PARAMS, diagnostic=True),
        _t("diag-audio", "audio", _DIAG_INPUTS, {"text"},
           "sleep, then echo the inputs", params=_DIAG_PARAMS, diagnostic=True),
    ]
}


def task_type(name: str) -> TaskType | None:
    return TASK_TYPES.get(name)


def plannable(available: set[str]) -> set[str]:
    """What the planner is offered of the served task types: a ControlNet control map (X-control) only
    with its drawing task (X-text-to-image). Alone it is a picture image-to-image's styles make too
    (canny, pose), and two names for one thing only confuse a small planner."""
    return {t for t in available if not (t.endswith("-control") and t.removesuffix("-control") in CONTROLS
                                          and f"{t.removesuffix('-control')}-text-to-image" not in available)}
