"""The Verbex dialect, mounted at ``/dialects/verbex``.

``GET /v1/calls/public/create-web-call?ai_agent_id=…&shared_key=…`` is a public-link route: the
``shared_key`` is a callgate shared key (``cg_sh_…``) bound to that one agent, revocable, rate-limited and
optionally origin-locked. It answers ``201 {"access_token": …}``, a callgate call token, which a page
opens as ``/dialects/verbex/v1/calls/web-call/ws?access_token=…`` (callgate's RTVI WebSocket).
Errors: 401 ``{error, message}``, 422 ``{detail: [{loc, msg, type}]}`` as FastAPI writes them, unknown
routes and methods as FastAPI's ``{"detail": "Not Found"}``. See docs/dialects/verbex.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, WebSocket, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from callgate.api.deps import RuntimeDep, principal_for
from callgate.api.dialects.errors import VALIDATION_DETAIL
from callgate.api.issue import BaseURLs, issue_web_call
from callgate.api.problems import register_dialect
from callgate.auth import tokens
from callgate.auth.keys import KeyType, normalize_origin
from callgate.domain import calls
from callgate.errors import (
    CallgateError,
    MalformedJSON,
    MethodNotAllowed,
    NotFound,
    OriginNotAllowed,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from callgate.realtime.websocket import endpoint as endpoints
from callgate.runtime import Runtime

PREFIX = "/dialects/verbex"
router = APIRouter(prefix=PREFIX, tags=["dialect: verbex"])
CORS = {"Access-Control-Allow-Origin": "*"}
"""A public link is fetched from any page; the key's own origin list is what locks it."""
KeyParam = Annotated[str, Query(min_length=1, max_length=200, description="Shared key for authentication")]
AgentParam = Annotated[str, Query(min_length=1, max_length=64, description="AI Agent ID")]


class PublicShareWebCallResponse(BaseModel):
    access_token: str


# ------------------------------------------------------------------------------------------ errors


def _loc(err: dict[str, Any]) -> list[str | int]:
    if "loc" in err:
        return list(err["loc"])
    return [int(p) if p.isdigit() else p for p in str(err.get("field", "")).split(".") if p]


def render(request: Request, error: CallgateError) -> Response:
    if isinstance(error, ValidationFailed | MalformedJSON):
        detail = [
            {"type": e.get("type") or "value_error", "loc": _loc(e), "msg": e.get("msg") or e.get("message")}
            for e in error.errors or [{"field": "query", "message": error.detail}]
        ]
        return JSONResponse({"detail": detail}, status_code=422, headers=CORS)
    if isinstance(error, NotFound | MethodNotAllowed) or error.status in (404, 405):
        text = "Not Found" if error.status == 404 else "Method Not Allowed"
        return JSONResponse({"detail": text}, status_code=error.status, headers=CORS)
    headers = dict(CORS)
    if isinstance(error, Unauthenticated):
        code, kind = 401, "unauthorized"
    elif isinstance(error, OriginNotAllowed):
        code, kind = 401, "origin_not_allowed"
    elif isinstance(error, RateLimited):
        code, kind = 429, "rate_limited"
        headers["Retry-After"] = str(error.retry_after)
    elif error.status >= 500:
        code, kind = 500, "internal_error"
    else:
        code, kind = error.status, error.code
    message = "An unexpected error occurred" if code == 500 else error.detail
    return JSONResponse({"error": kind, "message": message}, status_code=code, headers=headers)


ERROR_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "required": ["detail"],
            "properties": {"detail": {"anyOf": [{"type": "string"}, VALIDATION_DETAIL]}},
        },
        {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
    ]
}
register_dialect(PREFIX, render, error_schema=ERROR_SCHEMA)


# ------------------------------------------------------------------------------------------ routes


@router.get(
    "/v1/calls/public/create-web-call",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_web_call_public_shared_v1_calls_public_create_web_call_get",
)
async def create_web_call_public_shared(
    ai_agent_id: AgentParam, shared_key: KeyParam, request: Request, response: Response, runtime: RuntimeDep
) -> PublicShareWebCallResponse:
    principal = await principal_for(runtime, shared_key, response)
    if principal.type is not KeyType.SHARED:
        raise Unauthenticated("shared_key must be a shared key (cg_sh_…)")
    if principal.allowed_origins:
        origin = request.headers.get("origin")
        try:
            allowed = origin is not None and normalize_origin(origin) in principal.allowed_origins
        except ValueError:
            allowed = False
        if not allowed:
            raise OriginNotAllowed("this shared key does not allow requests from that origin")
    if not principal.may_use_agent(ai_agent_id):
        raise Unauthenticated("the shared key is not valid for this agent")
    spec = calls.NewCall(
        agent_id=ai_agent_id, transport="websocket", mode="audio", variables={}, metadata={}, dialect="verbex"
    )
    try:
        _, public = await issue_web_call(runtime, principal, urls=BaseURLs.of(runtime, request), spec=spec)
    except NotFound as exc:  # the agent was deleted: the link no longer works
        raise Unauthenticated("the shared key is not valid for this agent") from exc
    response.headers.update(CORS)
    return PublicShareWebCallResponse(access_token=public.token)


def _call_id(runtime: Runtime, token: str) -> str:
    try:
        return tokens.decode(token, key=runtime.signing_key, now=runtime.clock.now()).call_id
    except CallgateError:
        return ""  # the endpoint refuses the token with its documented close code


@router.websocket("/v1/calls/web-call/ws")
async def web_call_socket(ws: WebSocket, access_token: str = "") -> None:
    """Join with the ``access_token`` alone: it names its call. Then callgate's RTVI protocol."""
    runtime: Runtime = ws.app.state.runtime
    await endpoints.call_websocket(ws, _call_id(runtime, access_token), access_token)
