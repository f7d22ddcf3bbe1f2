"""The Voxworks dialect, mounted at ``/dialects/voxworks``.

``POST /api/v1/create-web-call`` creates a SIP-over-WebSocket web call for a browser softphone and
answers with per-call SIP credentials; ``GET /api/v1/get-call-result/{call_id}`` reads what happened.
A Voxworks ``script`` is a callgate agent. Errors are ``{"success": false, "message": ...}`` with the
vendor's status codes, and 429s carry ``Retry-After`` and ``X-RateLimit-*``. See docs/dialects/voxworks.md.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from callgate.api.deps import RuntimeDep, bearer, principal_for
from callgate.api.issue import BaseURLs, issue_web_call
from callgate.api.problems import register_dialect
from callgate.api.schemas.calls import Transport
from callgate.auth.keys import KeyType
from callgate.domain import calls
from callgate.domain.keys import Principal
from callgate.domain.lifecycle import CallStatus
from callgate.errors import (
    BadRequest,
    CallgateError,
    MalformedJSON,
    NotFound,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)

PREFIX = "/dialects/voxworks"
router = APIRouter(prefix=PREFIX, tags=["dialect: voxworks"])

STATUS = {
    CallStatus.CREATED: "scheduled",
    CallStatus.CONNECTING: "ringing",
    CallStatus.IN_PROGRESS: "in_progress",
    CallStatus.ENDED: "completed",
    CallStatus.FAILED: "failed",
}
"""callgate's call states in Voxworks words (``scheduled`` is the seed's; the rest are ours)."""
MAX_OBJECTS_BYTES = 16_384
ObjectType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class CreateWebCallRequest(BaseModel):
    """The seed's ``CreateWebCallRequest``. Fields Voxworks may add later are ignored, not refused."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    script_id: str = Field(min_length=1, max_length=64)
    contact_id: str | None = Field(default=None, min_length=1, max_length=64)
    did: str | None = Field(default=None, min_length=1, max_length=128)
    participant_identity: str | None = Field(default=None, min_length=1, max_length=200)
    objects: dict[ObjectType, dict[str, Any]] | None = Field(default=None, max_length=50)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _has_nul(data):  # PostgreSQL cannot store U+0000: refuse it as bad data, not a server error
            raise ValueError("text may not contain NUL characters")
        return data

    @field_validator("objects")
    @classmethod
    def _small(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        if value is not None and len(json.dumps(value)) > MAX_OBJECTS_BYTES:
            raise ValueError(f"objects are limited to {MAX_OBJECTS_BYTES} bytes of JSON")
        return value


class CreateWebCallResponse(BaseModel):
    success: bool = True
    call_id: str
    contact_id: str
    status: str
    script_id: str
    did: str | None
    ws_url: str
    sip_domain: str
    sip_username: str
    sip_password: str
    target: str
    headers: dict[str, str]


# ------------------------------------------------------------------------------------------ errors


def render(request: Request, error: CallgateError) -> Response:
    """Every error under the prefix, as ``ErrorResponse`` with the seed's status codes."""
    code, message = error.status, error.detail
    headers: dict[str, str] = {}
    if isinstance(error, ValidationFailed):
        code, message = 400, _validation_message(error)
    elif isinstance(error, MalformedJSON | BadRequest):
        code = 400
    elif isinstance(error, Unauthenticated):
        code, message = 401, "Invalid API key"
    elif isinstance(error, RateLimited):
        message = "Rate limit exceeded"
        headers = {
            "Retry-After": str(error.retry_after),
            "X-RateLimit-Limit": str(error.limit),
            "X-RateLimit-Remaining": str(error.remaining),
        }
    elif code == 429:  # the team's live-call cap: retry once a call has ended
        headers = {"Retry-After": "5"}
    elif code >= 500:
        code, message = 500, "Internal server error"
    return JSONResponse({"success": False, "message": message}, status_code=code, headers=headers)


def _validation_message(error: ValidationFailed) -> str:
    parts = []
    for err in error.errors or []:
        field = str(err.get("field") or ".".join(map(str, err.get("loc", ()))))
        field = field.removeprefix("body.").removeprefix("body")
        parts.append(f"{field}: {err.get('message') or err.get('msg')}" if field else str(err.get("message")))
    return "Invalid request data" + (f" ({'; '.join(parts)})" if parts else "")


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["success", "message"],
    "properties": {"success": {"const": False}, "message": {"type": "string"}},
}
"""The seed's ``ErrorResponse``."""
register_dialect(PREFIX, render, error_schema=ERROR_SCHEMA)


def _not_found(exc: NotFound) -> NotFound:
    """Domain wording → Voxworks wording (agents are scripts here)."""
    for ours, theirs in (("no agent", "Script"), ("no contact", "Contact"), ("no call", "Call")):
        if exc.detail.startswith(ours):
            return NotFound(f"{theirs} not found")
    return exc


# ------------------------------------------------------------------------------------------ auth


async def voxworks_key(request: Request, response: Response, runtime: RuntimeDep) -> Principal:
    """``Authorization: Bearer <callgate secret key>``; rate-limit headers in the X- form."""
    principal = await principal_for(runtime, bearer(request), response)
    if principal.type is not KeyType.SECRET:
        raise Unauthenticated("Voxworks routes take a secret key")
    response.headers["X-RateLimit-Limit"] = response.headers["RateLimit-Limit"]
    response.headers["X-RateLimit-Remaining"] = response.headers["RateLimit-Remaining"]
    return principal


VoxworksKey = Annotated[Principal, Depends(voxworks_key)]


# ------------------------------------------------------------------------------------------ routes


@router.post(
    "/api/v1/create-web-call", status_code=status.HTTP_201_CREATED, operation_id="voxworksCreateWebCall"
)
async def create_web_call(
    body: CreateWebCallRequest, request: Request, principal: VoxworksKey, runtime: RuntimeDep
) -> CreateWebCallResponse:
    did = body.did or "web"
    metadata: dict[str, Any] = {"did": did, "objects": body.objects or {}}
    if body.participant_identity is not None:
        metadata["participant_identity"] = body.participant_identity
    spec = calls.NewCall(
        agent_id=body.script_id,
        transport=Transport.SIP.value,
        mode="audio",
        variables={},
        metadata=metadata,
        contact_id=body.contact_id,
        dialect="voxworks",
        # An anonymous visitor becomes a contact, as on Voxworks.
        new_contact={"name": body.participant_identity, "attributes": {"source": "voxworks web call"}},
    )
    try:
        call, public = await issue_web_call(runtime, principal, urls=BaseURLs.of(runtime, request), spec=spec)
    except NotFound as exc:
        raise _not_found(exc) from exc
    assert public.sip is not None and call.contact_id is not None
    return CreateWebCallResponse(
        call_id=call.id,
        contact_id=call.contact_id,
        status=STATUS[CallStatus(call.status)],
        script_id=call.agent_id,
        did=did,
        **public.sip.model_dump(),
    )


@router.get("/api/v1/get-call-result/{call_id}", operation_id="voxworksGetCallResult")
async def get_call_result(
    call_id: str, request: Request, principal: VoxworksKey, runtime: RuntimeDep
) -> dict[str, Any]:
    if _has_nul(call_id):
        raise NotFound("Call not found")
    async with runtime.db.read() as s:
        try:
            call = await calls.get_call(s, team_id=principal.team_id, call_id=call_id)
        except NotFound as exc:
            raise _not_found(exc) from exc
        turns = await calls.list_turns(s, call_id=call.id)
    base = BaseURLs.of(runtime, request).http
    analysis: dict[str, Any] = call.analysis or {}
    extracted = analysis.get("data")
    duration = (
        round((call.ended_at - call.started_at).total_seconds())
        if call.started_at and call.ended_at
        else None
    )
    result = {
        "call_id": call.id,
        "contact_id": call.contact_id,
        "script_id": call.agent_id,
        "status": STATUS[CallStatus(call.status)],
        "end_reason": call.end_reason,
        "did": call.call_metadata.get("did"),
        "participant_identity": call.call_metadata.get("participant_identity"),
        "created_at": call.created_at.isoformat(),
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "duration": duration,
        "summary": analysis.get("summary") if isinstance(analysis.get("summary"), str) else None,
        "transcript": "\n".join(
            f"{'Agent' if t.role == 'agent' else 'User'}: {t.text}" for t in turns if t.spoken
        ),
        "recording_url": f"{base}/v1/calls/{call.id}/recording" if call.recording_path else None,
        "structured_data": {**call.data, **(extracted if isinstance(extracted, dict) else {})},
        "objects": call.call_metadata.get("objects", {}),
        "rating": analysis.get("rating"),
        "objectives": analysis.get("objectives") or [],
    }
    return {"success": True, "call": result}
