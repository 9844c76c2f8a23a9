"""Diagnostic experts (HGQ_DIAGNOSTICS=1): sleep a known time, echo inputs, fail on demand.

They give benchmarks DAGs with known durations and tests failures of every kind.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.errors import ExpertError, TransientExpertError
from shared.outputs import ExpertResult
from workers.expert import Expert, InputValue, register

_MARKERS = Path(tempfile.gettempdir()) / "hgq-diag"


class _Diag(Expert):
    description = "diagnostic: sleeps `seconds`, echoes its inputs"

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        started = time.time()
        time.sleep(float(params.get("seconds", 0)))
        mode = str(params.get("fail", ""))
        if mode == "permanent":
            raise ExpertError("diagnostic permanent failure")
        if mode == "always-transient":
            raise TransientExpertError("diagnostic transient failure")
        if mode == "transient":
            _MARKERS.mkdir(exist_ok=True)  # shared by all processes, so a retry elsewhere succeeds
            marker = _MARKERS / str(params.get("key", "default"))
            if not marker.exists():
                marker.touch()
                raise TransientExpertError("diagnostic transient failure (first try)")
        echoed = "+".join(str(inputs[k]) for k in sorted(inputs))
        name = str(params.get("name", self.task))
        return ExpertResult(text=f"{name}({echoed})", data={"started": started, "finished": time.time()})


@register
class DiagText(_Diag):
    model_id = "hgq/diag-text"
    task = "diag-text"
    pool = "text"


@register
class DiagVision(_Diag):
    model_id = "hgq/diag-vision"
    task = "diag-vision"
    pool = "vision"


@register
class DiagAudio(_Diag):
    model_id = "hgq/diag-audio"
    task = "diag-audio"
    pool = "audio"
