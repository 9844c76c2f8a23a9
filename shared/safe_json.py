"""JSON from the outside world, parsed with limits: nesting depth, digits per number, and text
that is valid Unicode (no unpaired surrogates such as "\\ud800", which cannot be stored or sent
on). Each violation is an `InputError` naming it, so the API answers 4xx instead of crashing on
RecursionError, ValueError (Python's 4,300-digit limit) or an encoding error later."""

from __future__ import annotations

import json
from typing import Any

from shared.errors import InputError

MAX_DEPTH = 32
MAX_INT_DIGITS = 64


def _int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise InputError(f"a number has {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def check_text(value: str, what: str = "text") -> None:
    """InputError when `value` holds an unpaired surrogate (it could not be encoded as UTF-8)."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise InputError(f"{what} contains an unpaired surrogate (\\u{ord(bad):04x}), which is not valid "
                         "Unicode text") from None


def check_value(data: Any, max_depth: int = MAX_DEPTH) -> None:
    """Walk parsed JSON (iteratively): depth and text validity."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            check_text(value)
        elif isinstance(value, dict | list):
            if depth > max_depth:
                raise InputError(f"JSON nested more than {max_depth} levels deep")
            if isinstance(value, dict):
                for key, item in value.items():
                    check_text(key, "a key")
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads with the limits above. json.JSONDecodeError (a ValueError) for text that is not
    JSON; InputError for JSON that breaks a limit."""
    try:
        data = json.loads(raw, parse_int=_int)
    except RecursionError:
        raise InputError(f"JSON nested more than {max_depth} levels deep") from None
    check_value(data, max_depth)
    return data
