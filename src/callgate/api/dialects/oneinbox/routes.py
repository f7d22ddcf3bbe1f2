"""The OneInbox dialect, mounted at ``/dialects/oneinbox``: web calls with LiveKit-style answers.

``POST /v1/web-calls/token`` (the seed: a publishable key, origin-locked), ``POST /v1/calls/web`` (a secret
key, from a backend), ``GET /v1/calls/{call_id}`` and ``POST /v1/calls/{call_id}/stop``. A call is joined
by opening ``{server_url}/rtc?access_token={participant_token}`` — callgate's RTVI WebSocket, entered with
the LiveKit-shaped token of :mod:`callgate.auth.livekit`. Errors are FastAPI's ``{"detail": …}``: a
``{"code", "message"}`` object (e.g. ``ORIGIN_NOT_ALLOWED``), or the 422 list.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, WebSocket, status
from fastapi.responses import JSONResponse, Response
from pydantic import Field, field_validator

from callgate.api import problems
from callgate.api.deps import BrowserPrincipal, RuntimeDep, SecretPrincipal
from callgate.api.dialects.errors import (
    VALIDATION_DETAIL,
    Lenient,
    error_headers,
    public_message,
    validation_detail,
)
from callgate.api.dialects.oneinbox.views import STATUS, call_response, iso
from callgate.api.issue import BaseURLs, issue_web_call
from callgate.api.schemas.calls import MAX_METADATA_BYTES
from callgate.api.schemas.common import Metadata, Variables
from callgate.auth import livekit, tokens
from callgate.domain import calls, telephony
from callgate.domain.keys import Principal
from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.errors import CallgateError, IllegalTransition, NotFound, ValidationFailed
from callgate.realtime.websocket.endpoint import serve_call
from callgate.runtime import Runtime

if TYPE_CHECKING:
    pass

PREFIX = "/dialects/oneinbox"
CALL_ID = re.compile(r"call_[A-Za-z0-9]{1,60}")
router = APIRouter(prefix=PREFIX, tags=["dialect: oneinbox"])


class WebCallRequest(Lenient):
    """``agent_id`` (``agt_…``, or its UUID form), ``variables`` for the prompt's ``{{placeholders}}``,
    ``metadata`` kept on the call. ``overrides`` are refused: callgate has no per-call overrides, and a
    publishable key may never pick providers."""

    agent_id: str = Field(min_length=1, max_length=64)
    variables: Variables = Field(default_factory=dict)
    metadata: Metadata = Field(default_factory=dict)
    overrides: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is limited to {MAX_METADATA_BYTES} bytes of JSON")
        return value


def _agent_id(value: str) -> str:
    try:
        return f"agt_{uuid.UUID(value).hex}"
    except ValueError:
        return value


async def _start(
    runtime: Runtime, principal: Principal, request: Request, body: WebCallRequest
) -> dict[str, Any]:
    if body.overrides:
        raise ValidationFailed(
            "overrides are not allowed",
            errors=[
                {
                    "loc": ["body", "overrides"],
                    "msg": "Per-call provider overrides are not allowed; configure them on the agent",
                    "type": "extra_forbidden",
                }
            ],
        )
    urls = BaseURLs.of(runtime, request)
    spec = calls.NewCall(
        agent_id=_agent_id(body.agent_id),
        transport="websocket",
        mode="audio",
        variables=body.variables,
        metadata=body.metadata,
        dialect="oneinbox",
    )
    call, public = await issue_web_call(runtime, principal, urls=urls, spec=spec)
    token = livekit.issue(
        signing_key=runtime.signing_key,
        call_id=call.id,
        team_id=call.team_id,
        transport=call.transport,
        now=call.created_at,
        expires_at=public.expires_at,
    )
    return {
        "id": call.id,
        "agent_id": call.agent_id,
        "type": "web",
        "status": STATUS[CallStatus(call.status)],
        "room_name": livekit.room_name(call.id),
        "server_url": f"{urls.ws}{PREFIX}",
        "participant_token": token,
        "created_at": iso(call.created_at),
    }


@router.post("/v1/web-calls/token", status_code=status.HTTP_201_CREATED, operation_id="oneinboxWebCallToken")
async def create_web_call_token(
    body: WebCallRequest, request: Request, principal: BrowserPrincipal, runtime: RuntimeDep
) -> dict[str, Any]:
    """From a browser, with a publishable key whose allowed origins include the request's ``Origin``."""
    return await _start(runtime, principal, request, body)


@router.post("/v1/calls/web", status_code=status.HTTP_201_CREATED, operation_id="oneinboxStartWebCall")
async def start_web_call(
    body: WebCallRequest, request: Request, principal: SecretPrincipal, runtime: RuntimeDep
) -> dict[str, Any]:
    """From a backend, with a secret key."""
    return await _start(runtime, principal, request, body)


async def _view(runtime: Runtime, request: Request, *, team_id: str, call_id: str) -> dict[str, Any]:
    if not CALL_ID.fullmatch(call_id):
        raise NotFound(f"no call with id {call_id!r}")
    async with runtime.db.read() as s:
        call = await calls.get_call(s, team_id=team_id, call_id=call_id)
        phone = (await telephony.phone_sides(s, call_ids=[call.id])).get(call.id)
        turns = await calls.list_turns(s, call_id=call.id)
    base = BaseURLs.of(runtime, request).http
    recording = f"{base}/v1/calls/{call.id}/recording" if call.recording_path else None
    return call_response(call, phone=phone, turns=turns, recording_url=recording)


@router.get("/v1/calls/{call_id}", operation_id="oneinboxGetCall")
async def get_call(
    call_id: str, request: Request, principal: SecretPrincipal, runtime: RuntimeDep
) -> dict[str, Any]:
    return await _view(runtime, request, team_id=principal.team_id, call_id=call_id)


@router.post("/v1/calls/{call_id}/stop", operation_id="oneinboxStopCall")
async def stop_call(
    call_id: str, request: Request, principal: SecretPrincipal, runtime: RuntimeDep
) -> dict[str, Any]:
    """End the call (a live session on any node hangs up). Stopping a call that is over changes nothing."""
    if not CALL_ID.fullmatch(call_id):
        raise NotFound(f"no call with id {call_id!r}")
    now = runtime.clock.now()
    try:
        call = await runtime.db.write(
            lambda s: calls.end_call(
                s, team_id=principal.team_id, call_id=call_id, reason=EndReason.API_REQUEST, now=now
            )
        )
    except IllegalTransition:
        pass  # already over: answer the call as it ended
    else:
        runtime.metrics.calls_ended.labels(reason=EndReason.API_REQUEST.value).inc()
        await runtime.control.publish_end(call.id, EndReason.API_REQUEST)
    return await _view(runtime, request, team_id=principal.team_id, call_id=call_id)


@router.websocket("/rtc")
async def rtc(ws: WebSocket, access_token: str = "") -> None:
    """Join with ``participant_token``; then callgate's RTVI protocol (docs/realtime-protocol.md)."""
    runtime: Runtime = ws.app.state.runtime

    async def redeem(now: datetime) -> tokens.CallToken:
        return await livekit.redeem(
            access_token,
            signing_key=runtime.signing_key,
            now=now,
            transport="websocket",
            ledger=runtime.ledger,
        )

    await serve_call(ws, redeem)


def render(request: Request, error: CallgateError) -> Response:
    """``{"detail": {"code": "ORIGIN_NOT_ALLOWED", "message": …}}``; a 422 has FastAPI's list."""
    if (entries := validation_detail(error)) is not None:
        return JSONResponse({"detail": entries}, status_code=422)
    body = {"detail": {"code": error.code.upper(), "message": public_message(error)}}
    return JSONResponse(body, status_code=error.status, headers=error_headers(error))


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "anyOf": [
                {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
                VALIDATION_DETAIL,
            ]
        }
    },
}
problems.register_dialect(PREFIX, render, error_schema=ERROR_SCHEMA)
