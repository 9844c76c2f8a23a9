"""Server-Sent Events framing."""

from __future__ import annotations

import json
import re
from typing import Any

_SEPARATORS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085", "\x0b": "\\u000b",
               "\x0c": "\\u000c", "\x1c": "\\u001c", "\x1d": "\\u001d", "\x1e": "\\u001e"}


def sse_frame(data: dict[str, Any] | str, event: str | None = None, eid: str | None = None) -> str:
    lines = []
    if eid:
        lines.append(f"id: {eid}")
    if event:
        lines.append(f"event: {event}")
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    # JSON keeps them escaped: clients that split lines like str.splitlines() (httpx, many SSE
    # libraries) would otherwise cut an event in two at a line separator inside a string
    for raw, escaped in _SEPARATORS.items():
        payload = payload.replace(raw, escaped)
    lines.extend(f"data: {line}" for line in re.split(r"\r\n|\r|\n", payload))
    return "\n".join(lines) + "\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
