"""Native error rendering: RFC 9457 ``application/problem+json`` with a stable ``code``."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from callgate.api.openapi_errors import document_errors
from callgate.errors import (
    CallgateError,
    InvalidToken,
    MalformedJSON,
    MethodNotAllowed,
    NodeBusy,
    NotFound,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"

_METHODS = frozenset(("get", "put", "post", "delete", "options", "head", "patch", "trace"))
Renderer = Callable[[Request, CallgateError], Response]
_DIALECT_RENDERERS: dict[str, Renderer] = {}
_DIALECT_ERROR_SCHEMAS: dict[str, dict[str, Any]] = {}


def register_dialect(prefix: str, renderer: Renderer, *, error_schema: dict[str, Any]) -> None:
    """Errors on paths under ``prefix`` (e.g. ``/dialects/voxworks``) are rendered by ``renderer``
    in that vendor's error shape instead of problem+json; ``error_schema`` (JSON Schema) describes
    those bodies in the OpenAPI document. Each dialect registers once, at import."""
    register_renderer(prefix, renderer)
    _DIALECT_ERROR_SCHEMAS[prefix.rstrip("/")] = error_schema


def register_renderer(prefix: str, renderer: Renderer) -> None:
    """Errors on paths under ``prefix`` are rendered by ``renderer`` (e.g. the dashboard's HTML
    pages), for routes that are not in the OpenAPI document."""
    _DIALECT_RENDERERS[prefix.rstrip("/")] = renderer


def _renderer_for(path: str) -> Renderer | None:
    for prefix, renderer in _DIALECT_RENDERERS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return renderer
    return None


def field_errors(errors: list[dict[str, Any]] | Any) -> list[dict[str, Any]]:
    """FastAPI/Pydantic error entries → ``[{field, message, type}]`` with a dotted field path."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"field": ".".join(loc), "message": str(err.get("msg", "")), "type": err.get("type", "")})
    return out


def translate_validation(exc: RequestValidationError) -> CallgateError:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return MalformedJSON("the request body is not valid JSON")
    fields = field_errors(errors)
    names = ", ".join(sorted({f["field"] for f in fields}))
    return ValidationFailed(f"invalid fields: {names}", errors=fields)


def translate_http(exc: StarletteHTTPException) -> CallgateError:
    if exc.status_code == 404:
        return NotFound("no such route")
    if exc.status_code == 405:
        return MethodNotAllowed("this route does not accept that method")
    error = CallgateError(str(exc.detail))
    error.status = exc.status_code
    error.code = "http_error"
    return error


def render(request: Request, error: CallgateError) -> Response:
    """The error in the shape of the API the request was made to (a dialect's, or problem+json)."""
    renderer = _renderer_for(request.url.path)
    return renderer(request, error) if renderer is not None else problem_response(request, error)


def problem_response(request: Request, error: CallgateError) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:callgate:error:{error.code}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        "instance": request.url.path,
    }
    if error.errors:
        body["errors"] = [
            e
            if "field" in e
            else {"field": ".".join(map(str, e.get("loc", ()))), "message": e.get("msg", "")}
            for e in error.errors
        ]
    headers: dict[str, str] = {}
    if isinstance(error, Unauthenticated) and not isinstance(error, InvalidToken):
        headers["WWW-Authenticate"] = 'Bearer realm="callgate"'
    if isinstance(error, NodeBusy):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, RateLimited):
        headers = {
            "Retry-After": str(error.retry_after),
            "RateLimit-Limit": str(error.limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(error.retry_after),
        }
    return JSONResponse(body, status_code=error.status, media_type=PROBLEM, headers=headers)


def _template(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def allowed_methods(request: Request, exc: StarletteHTTPException) -> list[str]:
    """Every method the request's path is served with. Starlette's 405 names only the first route that
    matched the path (POST but not GET for ``/v1/agents``); the OpenAPI document knows them all."""
    methods = {m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()}
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    matching = [path for path in paths if _template(path).fullmatch(request.url.path)]
    # A concrete path wins over a templated one (OpenAPI's rule): /calls/web is not /calls/{call_id}.
    for path in [p for p in matching if "{" not in p] or matching:
        methods |= {m.upper() for m in paths[path] if m in _METHODS}
    return sorted(methods)


def install(app: FastAPI) -> None:
    async def on_ours(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CallgateError)
        if exc.status >= 500:
            log.error("request failed: %s", exc.detail)
        return render(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return render(request, translate_validation(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        response = render(request, translate_http(exc))
        if exc.status_code == 405:  # RFC 9110: a 405 lists the methods the resource allows
            response.headers["Allow"] = ", ".join(allowed_methods(request, exc))
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return render(request, CallgateError("an unexpected error occurred"))

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_errors(generate(), render=render, error_schemas=_DIALECT_ERROR_SCHEMAS)
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(CallgateError, on_ours)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
