"""Mounts ``POST /v1/calls/{call_id}/webrtc/offer``: SDP offer in, SDP answer out, then the call runs.

The HTTP request only negotiates; the call itself runs in a background task owned by this router's
:class:`LiveCalls` (one per app, started and ended by the router's lifespan, so a server shutdown ends
every WebRTC call it holds). Token and join errors are HTTP problems whose statuses mirror the WebSocket
close codes: 401 invalid, 403 another call or transport, 404 no such call, 409 already used, 410 expired,
429 concurrency limit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from callgate.auth import tokens
from callgate.domain import calls
from callgate.domain.lifecycle import EndReason
from callgate.errors import (
    CallgateError,
    IllegalTransition,
    InvalidToken,
    NodeBusy,
    NotFound,
    TokenExpired,
    TokenMismatch,
    TokenReused,
)
from callgate.realtime.admission import RETRY_AFTER_S
from callgate.realtime.media import PeerMedia
from callgate.realtime.media.offer import MAX_SDP_CHARS, check_offer
from callgate.realtime.webrtc.call import LiveCalls, WebRTCCall, fail_call
from callgate.realtime.webrtc.transport import WebRTCTransport
from callgate.runtime import Runtime
from callgate.store.models import Agent, Call

log = logging.getLogger(__name__)

TOKEN_STATUS: dict[type[CallgateError], int] = {TokenMismatch: 403, TokenReused: 409, TokenExpired: 410}


class SessionDescription(BaseModel):
    """The browser's ``RTCSessionDescription`` (``pc.localDescription`` as JSON). Not stripped:
    SDP lines end with CRLF, the last one too."""

    model_config = ConfigDict(extra="forbid")

    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    type: Literal["offer"]


class SessionDescriptionAnswer(BaseModel):
    sdp: str
    type: Literal["answer"] = "answer"


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.webrtc_calls = LiveCalls()
    try:
        yield
    finally:
        await app.state.webrtc_calls.end_all()


router = APIRouter(lifespan=_lifespan)


def _bearer(authorization: str | None, token: str) -> str:
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if token:
        return token
    raise InvalidToken("send the call token as `Authorization: Bearer <token>` (or `?token=`)")


@router.post(
    "/v1/calls/{call_id}/webrtc/offer",
    response_model=SessionDescriptionAnswer,
    summary="Join a web call over WebRTC: post the SDP offer, get the SDP answer",
    responses={
        code: {"description": text}
        for code, text in (
            (400, "The SDP offer cannot be answered"),
            (401, "Missing or invalid call token"),
            (403, "The token belongs to another call or transport"),
            (404, "The call does not exist or has ended"),
            (409, "The token was already used"),
            (410, "The token expired (join deadline passed)"),
            (429, "The team's concurrent-call limit is reached"),
        )
    },
)
async def webrtc_offer(
    call_id: str,
    offer: SessionDescription,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    token: str = "",
) -> SessionDescriptionAnswer:
    runtime: Runtime = request.app.state.runtime
    secret = _bearer(authorization, token)
    check_offer(offer.sdp)  # a malformed offer is refused before the token is spent
    refusal = runtime.admission.refusal()
    if refusal is not None:
        raise NodeBusy(refusal, retry_after=RETRY_AFTER_S)
    call, agent = await _join(runtime, call_id, secret)
    transport = WebRTCTransport()
    media = PeerMedia(
        on_audio=transport.audio_received,
        on_message=transport.message_received,
        on_dtmf=transport.dtmf_received,
        on_state=transport.state_changed,
        ice_servers=runtime.settings.ice_servers,
        host_addresses=runtime.settings.webrtc_host_addresses,
        name=call.id,
    )
    transport.attach(media)
    try:
        answer = await media.answer(offer.sdp)
    except CallgateError:
        await media.close()
        await fail_call(runtime, call, EndReason.TRANSPORT_LOST)
        raise
    live: LiveCalls = request.app.state.webrtc_calls
    live.start(WebRTCCall(runtime, media=media, transport=transport, call=call, agent=agent))
    return SessionDescriptionAnswer(sdp=answer)


async def _join(runtime: Runtime, call_id: str, token: str) -> tuple[Call, Agent]:
    """Redeem the token and join the call (created → connecting), or raise the HTTP problem."""
    now = runtime.clock.now()
    try:
        claims = await tokens.redeem(
            token,
            key=runtime.signing_key,
            now=now,
            call_id=call_id,
            transport="webrtc",
            ledger=runtime.ledger,
        )
    except InvalidToken as exc:
        exc.status = TOKEN_STATUS.get(type(exc), exc.status)
        raise
    try:
        call = await runtime.db.write(
            lambda s: calls.join_call(s, team_id=claims.team_id, call_id=call_id, now=now)
        )
    except (NotFound, IllegalTransition) as exc:
        raise NotFound("the call does not exist or has already ended") from exc
    async with runtime.db.read() as s:
        agent = await s.get(Agent, call.agent_id)
    assert agent is not None
    return call, agent
