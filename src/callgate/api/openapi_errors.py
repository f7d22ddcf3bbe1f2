"""Error responses in the OpenAPI document, as the app really answers them.

FastAPI documents only a ``422`` with its own ``HTTPValidationError`` body under ``application/json``,
which callgate never sends. This fills every operation's error responses from the error tree instead:
which errors an operation can meet follows from what it takes (a key, path or query parameters, a body)
and whether it writes; each is rendered once through the renderer that serves the operation's path (the
native problem+json, or the dialect's own shape), so the status and media type documented are the ones
sent — a dialect that answers a validation error with 400, or an outage with 500, is documented so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from callgate.errors import (
    BadRequest,
    CallgateError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
    ValidationFailed,
)

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; `code` is stable, `detail` is for people.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code", "instance"],
    "properties": {
        "type": {"type": "string", "description": "`urn:callgate:error:<code>`"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string", "description": "The request's path."},
        "errors": {
            "type": "array",
            "description": "For validation errors: each field that is wrong and why.",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")
_UNKEYED = ("/healthz", "/readyz")


def _candidates(path: str, method: str, operation: dict[str, Any]) -> list[CallgateError]:
    """The errors ``method path`` can answer with, from what it takes."""
    if path == "/healthz":
        return []
    errors: list[CallgateError] = [ServiceUnavailable()]
    if path in _UNKEYED:
        return errors
    params = operation.get("parameters", [])
    has_body = "requestBody" in operation
    errors += [
        Unauthenticated(),
        Forbidden(),
        RateLimited(retry_after=1, limit=1),
    ]
    if params or has_body:
        errors += [ValidationFailed(), BadRequest()]
    if has_body:
        errors.append(PayloadTooLarge())
    if has_body or any(p.get("in") == "path" or p.get("required") for p in params):
        errors.append(NotFound())
    if method != "get":
        errors.append(Conflict())
    return errors


def _sample_request(path: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "server": ("callgate", 80),
            "path": path,
            "root_path": "",
            "query_string": b"",
            "headers": [],
        }
    )


def document_errors(
    schema: dict[str, Any],
    *,
    render: Callable[[Request, CallgateError], Response],
    error_schemas: dict[str, dict[str, Any]],
) -> None:
    """Declare the error responses of every operation in ``schema`` (an OpenAPI document), in place.

    ``render`` is the app's error renderer; ``error_schemas`` maps a dialect's path prefix to the JSON
    Schema of its error bodies."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for path, item in schema.get("paths", {}).items():
        body_schema: dict[str, Any] = {"$ref": "#/components/schemas/Problem"}
        for prefix, dialect_schema in error_schemas.items():
            if path.startswith(prefix + "/"):
                body_schema = dialect_schema
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            declared = {code: responses.pop(code) for code in list(responses) if code[0] in "45"}
            request = _sample_request(path)
            for error in _candidates(path, method, operation):
                sent = render(request, error)
                media = (sent.media_type or "application/json").split(";")[0]
                code = str(sent.status_code)
                entry = responses.setdefault(code, {"description": declared.get(code, {}).get("description")})
                entry["description"] = entry["description"] or error.title
                entry.setdefault("content", {})[media] = {"schema": body_schema}
            for code, entry in declared.items():
                if code not in responses and code != "422":  # FastAPI's own 422 is replaced above
                    media = "application/problem+json" if "$ref" in body_schema else "application/json"
                    responses[code] = {
                        "description": entry.get("description") or code,
                        "content": {media: {"schema": body_schema}},
                    }
            operation["responses"] = dict(sorted(responses.items()))
    text = repr(schema.get("paths"))
    for name in _FASTAPI_ERRORS:
        if f"#/components/schemas/{name}'" not in text:
            components.pop(name, None)
