"""The Dataqueue VoiceHub dialect, mounted at ``/dialects/voicehub``.

``POST /calls/public/create-web-call`` with ``x-api-access-key`` and ``voicehub-agent-id`` headers and a
``{"type": "text" | "WebAudio" | "TextAudio"}`` body answers ``201 {callId, webCallSocketPath}``; the
socket path speaks VoiceHub's channel messages (:mod:`callgate.api.dialects.voicehub.socket`). The route
is open to browsers (CORS ``*`` as the vendor documents); publishable keys stay origin-locked.
See docs/dialects/voicehub.md.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, field_validator

from callgate.api.deps import RuntimeDep, check_origin, principal_for
from callgate.api.dialects.voicehub import socket as voicehub_socket
from callgate.api.issue import BaseURLs, issue_web_call
from callgate.api.problems import register_dialect
from callgate.domain import calls
from callgate.domain.agents import get_agent
from callgate.domain.keys import Principal
from callgate.errors import (
    BadRequest,
    CallgateError,
    ConfigError,
    InsufficientCredits,
    MalformedJSON,
    MethodNotAllowed,
    NotFound,
    ProviderError,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from callgate.runtime import Runtime

if TYPE_CHECKING:
    from callgate.store.models import Agent

log = logging.getLogger(__name__)
PREFIX = "/dialects/voicehub"
CREATE_PATH = "/calls/public/create-web-call"
router = APIRouter(prefix=PREFIX, tags=["dialect: voicehub"])
router.include_router(voicehub_socket.router)

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, voicehub-agent-id, x-api-access-key",
}


class CallType(StrEnum):
    TEXT = "text"
    WEB_AUDIO = "WebAudio"
    TEXT_AUDIO = "TextAudio"

    @property
    def mode(self) -> str:
        return {"text": "text", "WebAudio": "audio", "TextAudio": "audio_text"}[self.value]


class CreateWebCallBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: CallType

    @field_validator("type", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        """``webaudio`` and ``Text`` are taken too: widgets differ in case, never in meaning."""
        if isinstance(value, str):
            return next((t for t in CallType if t.value.lower() == value.strip().lower()), value)
        return value


class CreateWebCallResponse(BaseModel):
    callId: str
    webCallSocketPath: str


# ------------------------------------------------------------------------------------------ errors


def render(request: Request, error: CallgateError) -> Response:
    """The seed's statuses (400 misconfigured, 401 key, 403 credits, 405 not allowed) in a NestJS-style
    body, ``{statusCode, message, error}``, with the CORS headers so widgets can read it."""
    code, message = error.status, error.detail
    headers = dict(CORS)
    if isinstance(error, ValidationFailed | MalformedJSON | BadRequest):
        code = 400
        if isinstance(error, ValidationFailed):
            fields = ", ".join(str(e.get("field", "")).removeprefix("body.") for e in error.errors or [])
            message = f"Invalid request: {fields or error.detail}"
    elif isinstance(error, Unauthenticated):
        code, message = 401, "Invalid API key"
    elif isinstance(error, InsufficientCredits):
        message = "Insufficient credits"
    elif isinstance(error, MethodNotAllowed):
        message = "Operation not allowed"
    elif isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    elif code == 429:
        headers["Retry-After"] = "5"
    elif code >= 500:
        code, message = 500, "Internal server error"
    body = {"statusCode": code, "message": message, "error": HTTPStatus(code).phrase}
    return JSONResponse(body, status_code=code, headers=headers)


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["statusCode", "message", "error"],
    "properties": {
        "statusCode": {"type": "integer"},
        "message": {"type": "string"},
        "error": {"type": "string"},
    },
}
register_dialect(PREFIX, render, error_schema=ERROR_SCHEMA)


# ------------------------------------------------------------------------------------------ auth


async def voicehub_key(request: Request, response: Response, runtime: RuntimeDep) -> Principal:
    """Any callgate key in ``x-api-access-key``; a publishable one only from its allowed origins."""
    raw = request.headers.get("x-api-access-key", "").strip()
    if not raw:
        raise Unauthenticated("send your API key in the x-api-access-key header")
    principal = await principal_for(runtime, raw, response)
    check_origin(principal, request)
    return principal


VoiceHubKey = Annotated[Principal, Depends(voicehub_key)]


def _engines_ready(runtime: Runtime, agent: Agent, mode: str) -> None:
    """Build (or find cached) every engine the call will need; raises what the registry raises."""
    registry = runtime.engines
    if agent.flow is None:
        registry.llm(agent.llm)
    if mode != "text":
        registry.vad(agent.stt.get("vad"))
        registry.stt({k: v for k, v in agent.stt.items() if k != "vad"})
        registry.tts(agent.tts)


async def check_agent(runtime: Runtime, principal: Principal, agent_id: str, mode: str) -> None:
    """VoiceHub's 400 "Misconfigured agent": unknown here, not usable by this key, a prompt agent with
    no LLM configured, or an audio call whose speech engines are not installed."""
    try:
        if not principal.may_use_agent(agent_id):
            raise NotFound(f"no agent with id {agent_id!r}")
        async with runtime.db.read() as s:
            agent = await get_agent(s, team_id=principal.team_id, agent_id=agent_id)
    except NotFound as exc:
        raise BadRequest(f"Misconfigured agent: {exc.detail}") from exc
    try:
        # Off the event loop: the first call of a process may load speech models.
        await asyncio.to_thread(_engines_ready, runtime, agent, mode)
    except (ConfigError, ProviderError, ValidationFailed) as exc:
        raise BadRequest(f"Misconfigured agent: {exc.detail}") from exc
    except Exception as exc:  # an engine that does not build (a broken install, a missing model)
        log.warning("agent %s: engines do not build: %r", agent_id, exc)
        raise BadRequest(f"Misconfigured agent: its engines cannot be built ({type(exc).__name__})") from exc


# ------------------------------------------------------------------------------------------ routes


@router.options(CREATE_PATH, include_in_schema=False)
async def preflight() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=CORS)


@router.post(CREATE_PATH, status_code=status.HTTP_201_CREATED, operation_id="voicehubCreateWebCall")
async def create_web_call(
    body: CreateWebCallBody,
    request: Request,
    response: Response,
    principal: VoiceHubKey,
    runtime: RuntimeDep,
    agent_id: Annotated[str | None, Header(alias="voicehub-agent-id", max_length=64)] = None,
) -> CreateWebCallResponse:

    if not agent_id or not agent_id.strip():
        raise BadRequest("Misconfigured agent: send the agent id in the voicehub-agent-id header")
    agent_id = agent_id.strip()
    mode = body.type.mode
    await check_agent(runtime, principal, agent_id, mode)
    urls = BaseURLs.of(runtime, request)
    spec = calls.NewCall(
        agent_id=agent_id,
        transport="websocket",
        mode=mode,
        variables={},
        metadata={"voicehub_type": body.type.value},
        dialect="voicehub",
    )
    try:
        call, public = await issue_web_call(runtime, principal, urls=urls, spec=spec)
    except NotFound as exc:  # the agent was deleted meanwhile
        raise BadRequest(f"Misconfigured agent: {exc.detail}") from exc
    response.headers.update(CORS)
    base_path = urlsplit(urls.ws).path.rstrip("/")
    return CreateWebCallResponse(
        callId=call.id,
        webCallSocketPath=f"{base_path}{PREFIX}{voicehub_socket.socket_path(call.id, public.token)}",
    )
