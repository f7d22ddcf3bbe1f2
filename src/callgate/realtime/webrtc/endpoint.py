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
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from callgate.domain.live_calls import CallPlan
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
from callgate.realtime.start import CallStarter
from callgate.realtime.webrtc.call import LiveCalls, WebRTCCall
from callgate.realtime.webrtc.transport import WebRTCTransport

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
    starter: CallStarter = request.app.state.call_starter
    secret = _bearer(authorization, token)
    _token_problem(lambda: starter.verify(secret, call_id=call_id, transport="webrtc"))
    check_offer(offer.sdp)  # a malformed offer is refused before anything is spent
    refusal = starter.refusal()
    if refusal is not None:
        raise NodeBusy(refusal, retry_after=RETRY_AFTER_S)
    transport = WebRTCTransport()
    settings = starter.settings
    media = PeerMedia(
        on_audio=transport.audio_received,
        on_message=transport.message_received,
        on_dtmf=transport.dtmf_received,
        on_state=transport.state_changed,
        ice_servers=settings.ice_servers,
        host_addresses=settings.webrtc_host_addresses,
        name=call_id,
    )
    transport.attach(media)
    try:
        # Negotiated before the token is spent: an offer aiortc cannot answer costs the caller nothing.
        answer = await media.answer(offer.sdp)
        plan = await _join(starter, call_id, secret)
    except BaseException:
        await media.close()
        raise
    live: LiveCalls = request.app.state.webrtc_calls
    live.start(WebRTCCall(starter, plan, media=media, transport=transport))
    return SessionDescriptionAnswer(sdp=answer)


def _token_problem(check: Callable[[], object]) -> None:
    """Run a token check; its error becomes the HTTP problem whose status mirrors the close code."""
    try:
        check()
    except InvalidToken as exc:
        exc.status = TOKEN_STATUS.get(type(exc), exc.status)
        raise


async def _join(starter: CallStarter, call_id: str, token: str) -> CallPlan:
    """Redeem the token and join the call (created → connecting), or raise the HTTP problem."""
    try:
        claims = await starter.redeem(token, call_id=call_id, transport="webrtc")
    except InvalidToken as exc:
        exc.status = TOKEN_STATUS.get(type(exc), exc.status)
        raise
    try:
        return await starter.join(team_id=claims.team_id, call_id=call_id)
    except (NotFound, IllegalTransition) as exc:
        raise NotFound("the call does not exist or has already ended") from exc
