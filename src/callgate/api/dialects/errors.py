"""Pieces shared by the dialects whose vendor runs FastAPI (Vocode, OneInbox): request bodies that ignore
unknown fields, as Pydantic models do by default, and errors as FastAPI answers them — a 422 carries
``{"detail": [{"loc", "msg", "type"}]}``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from callgate.errors import CallgateError, MalformedJSON, RateLimited, Unauthenticated, ValidationFailed


def _nul_at(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return f"{path}.{key!r}"
        if (found := _nul_at(item, f"{path}.{key}")) is not None:
            return found
    return None


class Lenient(BaseModel):
    """A request body: unknown fields are ignored; text with U+0000 (which PostgreSQL cannot store) is a
    422 on every engine rather than a failed write."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if (where := _nul_at(data, "body")) is not None:
            raise ValueError(f"{where} contains a NUL character")
        return data


def _entry(entry: dict[str, Any]) -> dict[str, Any]:
    if "loc" in entry:
        loc = list(entry["loc"])
    else:
        loc = [int(p) if p.isdigit() else p for p in str(entry.get("field") or "body").split(".")]
    message = str(entry.get("msg", entry.get("message", "")))
    return {"loc": loc, "msg": message, "type": entry.get("type") or "value_error"}


def validation_detail(error: CallgateError) -> list[dict[str, Any]] | None:
    """FastAPI's 422 ``detail`` list for a validation error (or malformed JSON); None for other errors."""
    if isinstance(error, MalformedJSON):
        return [{"loc": ["body"], "msg": error.detail, "type": "json_invalid"}]
    if isinstance(error, ValidationFailed):
        return [_entry(e) for e in error.errors or [{"loc": ["body"], "msg": error.detail}]]
    return None


def error_headers(error: CallgateError) -> dict[str, str]:
    if isinstance(error, RateLimited):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    return {}


def public_message(error: CallgateError) -> str:
    """The error's message; an unexpected error says no more than FastAPI would."""
    return "Internal Server Error" if type(error) is CallgateError else error.detail


VALIDATION_DETAIL: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    },
}
"""FastAPI's 422 ``detail`` list, as JSON Schema (for the dialects' OpenAPI error responses)."""
