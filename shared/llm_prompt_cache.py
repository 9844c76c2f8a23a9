"""Prompt-state caches for the embedded llama.cpp server (installed in its child process).

llama-cpp-python saves the model state after each completion and, on the next prompt, restores
the saved state that shares the longest token prefix, so only the new tokens are evaluated. The
planner's prompt (instructions, task catalogue, demonstrations: ~1,100-1,400 tokens) is the same
for every request, so this saves most of a plan's prompt evaluation. Two defects of the stock
caches are fixed here:

* Each saved state carries a copy of the logits of up to `n_batch` tokens (512 x 151,936 floats,
  311 MB for Qwen2.5) that the capacity does not count, so a "1 GiB" cache can hold gigabytes.
  The logits are never read after a restore (llama-cpp re-decodes at least one token), so
  `slim()` keeps one row.
* The stock disk cache removes the entry it returns. Any other stage's call (model choice,
  answer) then deletes the planner prefix from disk. `PersistentPromptCache` keeps it, so the
  prefix survives the server: the first plan of a freshly started server is a cache hit.

`install(cache_dir)` makes `llama_cpp.server` build these classes ("ram" and "disk" cache types).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp.llama import LlamaState
from llama_cpp.llama_cache import LlamaDiskCache, LlamaRAMCache


def slim(state: LlamaState) -> LlamaState:
    """The same state without the logits history (one row is kept: it broadcasts on restore)."""
    return LlamaState(
        input_ids=state.input_ids.copy(),
        scores=np.array(state.scores[-1:], dtype=np.single, copy=True),
        n_tokens=state.n_tokens,
        llama_state=state.llama_state,
        llama_state_size=state.llama_state_size,
        seed=state.seed,
    )


class SlimRAMCache(LlamaRAMCache):
    """llama-cpp's RAM cache, storing slim states so that its capacity is what it holds."""

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        super().__setitem__(key, slim(value))


class PersistentPromptCache(LlamaDiskCache):
    """A disk cache of slim states that keeps what it returns (shared by servers of one model).

    A cache must never break serving: an unreadable entry is a miss (and is dropped), a failed
    write (disk full, read-only home) is skipped; both are said once on stderr (the server log).
    """

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        best = None
        try:
            best = self._find_longest_prefix_key(tuple(key))
            value = self.cache.get(best) if best is not None else None
        except Exception as exc:  # noqa: BLE001 - a corrupt or vanished entry
            print(f"hgq: prompt cache entry unreadable, ignored: {exc!r}", file=sys.stderr)
            if best is not None:
                self.cache.delete(best)
            raise KeyError("unreadable cached prefix") from exc
        if not isinstance(value, LlamaState) or len(value.llama_state) != value.llama_state_size:
            raise KeyError("no cached prefix")  # none, evicted meanwhile by another server, or truncated
        return value

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        try:
            self.cache.set(tuple(key), slim(value))
            while self.cache_size > self.capacity_bytes and len(self.cache) > 1:
                self.cache.delete(next(iter(self.cache)))
        except Exception as exc:  # noqa: BLE001 - the answer is already computed: just do not keep it
            print(f"hgq: prompt cache write skipped: {exc!r}", file=sys.stderr)


def install(cache_dir: str | None) -> None:
    """Make `llama_cpp.server` use these caches; the disk one lives in `cache_dir`."""
    directory = Path(cache_dir) if cache_dir else None

    class _DiskCache(PersistentPromptCache):
        def __init__(self, capacity_bytes: int = 2 << 30) -> None:
            if directory is None:
                raise SystemExit("hgq: the disk prompt cache needs a directory")
            directory.mkdir(parents=True, exist_ok=True)
            super().__init__(cache_dir=str(directory), capacity_bytes=capacity_bytes)

    llama_cpp.LlamaRAMCache = SlimRAMCache  # type: ignore[misc]
    llama_cpp.LlamaDiskCache = _DiskCache  # type: ignore[misc,assignment]  # a subclass of the stock one
    print(f"hgq: slim prompt caches installed (disk: {directory})", file=sys.stderr)
