"""Error pieces shared by dialects whose vendor runs FastAPI (Vocode, OneInbox): a 422 answers
``{"detail": [{"loc", "msg", "type"}]}``, as FastAPI's request validation does."""

from __future__ import annotations

from typing import Any

from callgate.errors import CallgateError, MalformedJSON, RateLimited, Unauthenticated, ValidationFailed


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
