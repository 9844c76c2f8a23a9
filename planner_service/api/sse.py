"""Server-Sent Events framing."""

from __future__ import annotations

import json
from typing import Any


def sse_frame(data: dict[str, Any] | str, event: str | None = None, eid: str | None = None) -> str:
    lines = []
    if eid:
        lines.append(f"id: {eid}")
    if event:
        lines.append(f"event: {event}")
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    lines.extend(f"data: {line}" for line in payload.split("\n"))
    return "\n".join(lines) + "\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
