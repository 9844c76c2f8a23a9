"""A diffusers pipeline behind the InferenceClient methods hgq's calls use (workers/remote/calls.py):
text_to_image, image_to_image (an img2img pipeline, or a ControlNet one fed the control map) and
text_to_video (frames encoded to MP4/WebM). Steps, seed, guidance, size and frames come from the
models file entry; its `options` go to every call."""

from __future__ import annotations

import io
import threading
from typing import Any

from shared.custom_models import CONTROL_TEXT_TO_IMAGE, DiffusersModel
from shared.errors import ExpertError
from workers.hf_local.weights import pick_device, pick_dtype, weights_dir

_BASES: dict[tuple[str, str, str], Any] = {}
_BASES_LOCK = threading.Lock()


def _base(path: str, dtype: Any, device: str) -> Any:
    """One copy per process of a checkpoint's pipeline on a device: the text-to-image, image-to-image and
    ControlNet entries of one base model share its UNet, VAE and text encoder (`from_pipe`)."""
    import diffusers

    key = (path, str(dtype), device)
    with _BASES_LOCK:
        if key not in _BASES:
            pipe = diffusers.DiffusionPipeline.from_pretrained(path, dtype=dtype).to(device)
            pipe.set_progress_bar_config(disable=True)
            _BASES[key] = pipe
        return _BASES[key]


def load_diffusers(spec: DiffusersModel) -> tuple[Any, str]:
    """The pipeline on its device, and the device."""
    import diffusers

    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    base = _base(weights_dir(spec.weights), dtype, device)  # the class its model_index.json names
    if spec.task in CONTROL_TEXT_TO_IMAGE:
        assert spec.controlnet is not None  # the models file checks it
        controlnet = diffusers.ControlNetModel.from_pretrained(weights_dir(spec.controlnet), dtype=dtype).to(device)
        pipe = diffusers.AutoPipelineForText2Image.from_pipe(base, controlnet=controlnet)
    elif spec.task == "image-to-image":
        pipe = diffusers.AutoPipelineForImage2Image.from_pipe(base)
    else:  # text-to-image, text-to-video
        pipe = base
    pipe.set_progress_bar_config(disable=True)
    return pipe, device


class DiffusersClient:
    def __init__(self, pipe: Any, spec: DiffusersModel, device: str):
        self.pipe = pipe
        self.spec = spec
        self.device = device
        self._lock = threading.Lock()  # a pipeline's scheduler holds per-call state

    def _kwargs(self) -> dict[str, Any]:
        import torch

        s = self.spec
        kw: dict[str, Any] = {"num_inference_steps": s.steps}
        if s.seed is not None:
            kw["generator"] = torch.Generator(device="cpu" if self.device == "mps" else self.device).manual_seed(s.seed)
        for name in ("guidance_scale", "width", "height", "num_frames"):
            if getattr(s, name) is not None:
                kw[name] = getattr(s, name)
        return {**kw, **s.options}

    def _run(self, prompt: str, **kw: Any) -> Any:
        with self._lock:
            return self.pipe(prompt=prompt, **self._kwargs(), **kw)

    def text_to_image(self, prompt: str) -> Any:
        return self._run(prompt).images[0]

    def image_to_image(self, image: bytes, prompt: str | None = None) -> Any:
        from PIL import Image

        picture = Image.open(io.BytesIO(image)).convert("RGB")
        kw: dict[str, Any] = {"image": picture}
        if self.spec.task in CONTROL_TEXT_TO_IMAGE:  # the control map decides the layout, and the size
            kw.setdefault("width", self.spec.width or picture.width // 8 * 8)
            kw.setdefault("height", self.spec.height or picture.height // 8 * 8)
        if not prompt:
            raise ExpertError(f"{self.spec.id} draws from a description: give the task a text")
        with self._lock:
            return self.pipe(prompt=prompt, **{**self._kwargs(), **kw}).images[0]

    def text_to_video(self, prompt: str) -> bytes:
        from workers.hf_local.video import encode_video

        frames = self._run(prompt).frames[0]  # a batch of one video
        data, _, _ = encode_video(list(frames), self.spec.fps)
        return data
