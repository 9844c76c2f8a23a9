"""Where a local model's weights are and which device and dtype it runs on.

Weights: a folder given in the models file, else HGQ_MODEL_DIR/<org>--<name>, else the Hugging
Face cache (shared/model_files.py); never the network. Device: `auto` is this process's GPU when
there is one (CUDA_VISIBLE_DEVICES pins a worker process to one), else the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.errors import ModelUnavailable
from shared.model_files import ModelSpec, model_unavailable_reason, resolve_model_dir

DOWNLOAD_HINT = "run `hgq models download` on a machine with network, or copy the model's folder there"


def _folder(ref: str) -> Path | None:
    path = Path(ref).expanduser()
    return path if path.is_absolute() or ref.startswith(".") else None


def weights_missing(ref: str) -> str | None:
    """None when the weights of `ref` (repo id or folder) are on this machine; else why not."""
    folder = _folder(ref)
    if folder is not None:
        return None if folder.is_dir() else f"model folder {folder} does not exist"
    reason = model_unavailable_reason(ModelSpec(repo_id=ref, required=()))
    return None if reason is None else f"{reason}; {DOWNLOAD_HINT}"


def weights_dir(ref: str) -> str:
    """The folder holding `ref`'s weights (ModelUnavailable when they are not on this machine)."""
    folder = _folder(ref)
    if folder is not None:
        if not folder.is_dir():
            raise ModelUnavailable(f"model folder {folder} does not exist")
        return str(folder)
    try:
        return str(resolve_model_dir(ModelSpec(repo_id=ref, required=())))
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"{exc}; {DOWNLOAD_HINT}") from exc


def pick_device(device: str) -> str:
    """'auto' -> 'cuda:0' when torch sees a GPU (the process's first visible one), else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise ModelUnavailable(f"device {device}: torch sees no CUDA GPU here"
                                   + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "")
                                   + f"; torch {torch.__version__} " + ("has CUDA" if torch.version.cuda else
                                                                         "is a CPU-only build"))
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ModelUnavailable(f"device {device}: this process sees {torch.cuda.device_count()} GPU(s)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelUnavailable("device mps: not available here")
    return device


def pick_dtype(dtype: str, device: str) -> Any:
    """'auto' -> float16 on a GPU, float32 on the CPU (half precision on a CPU is slow or unsupported)."""
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith(("cuda", "mps")) else torch.float32
    return getattr(torch, dtype)
