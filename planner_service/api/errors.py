"""The API's error answer: one JSON shape for every 4xx/5xx, and pydantic errors as field paths."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from shared import safe_json
from shared.errors import InputError

MAX_DETAILS = 50  # problems listed in one error answer


class ApiError(Exception):
    """An error answered as JSON: {"error": {"message", "type", "field", "param", "details"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", field: str | None = None,
                 headers: dict[str, str] | None = None, details: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.field = status, message, type_, field
        self.headers = headers or {}
        self.details = details or []


def error_body(status: int, message: str, type_: str, field: str | None,
                details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message, "type": type_, "field": field, "param": field, "code": status}
    if details:
        err["details"] = details
    return {"error": err}


_UNION_LABELS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic error location as a field path; union-branch labels are left out."""
    parts: list[str] = []
    for p in loc:
        p = str(p)
        if p in ("body", "query", "path", "header") and not parts:
            continue
        if "[" in p or p in _UNION_LABELS or (parts and parts[-1] == p):
            continue  # 'list[tagged-union[...]]', 'str', or a discriminator tag equal to its field
        parts.append(p)
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def validation_error(exc: ValidationError | RequestValidationError) -> ApiError:
    """A 422 naming every bad field as a path: `plan[0].id`, `messages[1].content[0]`. Of the
    errors of a union's branches, the deepest (the branch the input was meant for) are kept."""
    found = []
    for err in exc.errors():
        field = "body" if err.get("type") == "json_invalid" else _field_path(list(err.get("loc", ())))
        found.append({"field": field, "problem": str(err.get("msg"))})
    # linear in the number of errors (a body with thousands of unknown keys must not stall the API)
    parents = {field[:i] for d in found for field in (d["field"],) for i, ch in enumerate(field) if ch in ".["}
    details, seen = [], set()
    for d in found:
        key = (d["field"], d["problem"])
        if d["field"] not in parents and key not in seen:
            seen.add(key)
            details.append(d)
    first = details[0] if details else {"field": "body", "problem": "invalid"}
    shown = details[:MAX_DETAILS]
    message = "; ".join(f"{d['field']}: {d['problem']}" for d in shown)
    if len(details) > len(shown):
        message += f"; and {len(details) - len(shown)} more"
    return ApiError(422, message, field=first["field"], details=shown)



_Body = TypeVar("_Body", bound=BaseModel)


def json_body(raw: bytes, model: type[_Body]) -> _Body:
    """Parse and validate a JSON body; 400 for bad JSON, 422 naming the field otherwise."""
    try:
        data = safe_json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", field="body") from exc
    except InputError as exc:
        raise ApiError(400, f"body refused: {exc}", field="body") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc
