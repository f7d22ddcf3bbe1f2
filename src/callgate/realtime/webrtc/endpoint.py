"""Mounts ``POST /v1/calls/{call_id}/webrtc/offer``: SDP offer in, SDP answer out, then the call runs.

The HTTP request only negotiates; the call itself runs in a background task owned by this router's
:class:`LiveCalls` (one per app, started and ended by the router's lifespan, so a server shutdown ends
every WebRTC call it holds). Token and join errors are HTTP problems whose statuses mirror the WebSocket
close codes: 401 invalid, 403 another call or transport, 404 no such call, 409 already used, 410 expired,
429 concurrency limit.

The same URL speaks ``@pipecat-ai/small-webrtc-transport``'s signalling: its offer body adds ``pc_id``
and ``restart_pc``, our answer carries a ``pc_id``, and it trickles its ICE candidates with ``PATCH``
(``{"pc_id": ..., "candidates": [{"candidate", "sdp_mid", "sdp_mline_index"}]}``) to the same URL, the
call token still in its query string.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from callgate.domain.live_calls import CallPlan
from callgate.errors import (
    BadRequest,
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
from callgate.realtime.webrtc.transport import CHANNEL_LABELS, WebRTCTransport

log = logging.getLogger(__name__)

TOKEN_STATUS: dict[type[CallgateError], int] = {TokenMismatch: 403, TokenReused: 409, TokenExpired: 410}
MAX_TRICKLED_CANDIDATES = 64
"""Per call; a browser gathers a handful per interface."""


class SessionDescription(BaseModel):
    """The browser's ``RTCSessionDescription`` (``pc.localDescription`` as JSON). Not stripped:
    SDP lines end with CRLF, the last one too. SmallWebRTC adds ``pc_id`` (``null`` on a first offer),
    ``restart_pc`` and, if its app set some, ``requestData`` (ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    type: Literal["offer"]
    pc_id: str | None = Field(default=None, max_length=64)
    restart_pc: bool = False
    request_data: dict[str, Any] | None = Field(default=None, alias="requestData")


class SessionDescriptionAnswer(BaseModel):
    sdp: str
    type: Literal["answer"] = "answer"
    pc_id: str
    """Names this peer connection for trickled ICE candidates (SmallWebRTC's ``PATCH``)."""


class IceCandidate(BaseModel):
    """``RTCIceCandidate`` as SmallWebRTC sends it; an empty ``candidate`` ends the peer's candidates."""

    candidate: str = Field(max_length=512)
    sdp_mid: str | None = Field(default=None, max_length=32)
    sdp_mline_index: int | None = Field(default=None, ge=0, le=32)


class IceCandidates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pc_id: str = Field(min_length=1, max_length=64)
    candidates: list[IceCandidate] = Field(max_length=MAX_TRICKLED_CANDIDATES)


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
    if offer.pc_id is not None or offer.restart_pc:  # SmallWebRTC reconnecting: a token joins once
        raise _with_status(TokenReused("reconnection is not supported: create a new call"))
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
        channel_labels=CHANNEL_LABELS,
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
    call = WebRTCCall(starter, plan, media=media, transport=transport, token=secret)
    live.start(call)
    return SessionDescriptionAnswer(sdp=answer, pc_id=call.pc_id)


@router.patch(
    "/v1/calls/{call_id}/webrtc/offer",
    status_code=204,
    summary="Trickle ICE candidates to a WebRTC call (SmallWebRTC's PATCH)",
    responses={
        400: {"description": "A candidate cannot be used"},
        401: {"description": "Missing call token, or not the token that made this peer connection"},
        404: {"description": "No such peer connection on this call"},
    },
)
async def webrtc_candidates(
    call_id: str,
    body: IceCandidates,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    token: str = "",
) -> Response:
    secret = _bearer(authorization, token)
    live: LiveCalls = request.app.state.webrtc_calls
    call = live.find(body.pc_id)
    if call is None or call.plan.call_id != call_id:
        raise NotFound("no such peer connection on this call (it may have ended)")
    if not secrets.compare_digest(call.token.encode(), secret.encode()):
        raise InvalidToken("not the call token that made this peer connection")
    if call.candidates_added + len(body.candidates) > MAX_TRICKLED_CANDIDATES:
        raise BadRequest(f"at most {MAX_TRICKLED_CANDIDATES} candidates per call")
    for candidate in body.candidates:
        try:
            await call.media.add_candidate(
                candidate.candidate, sdp_mid=candidate.sdp_mid, sdp_mline_index=candidate.sdp_mline_index
            )
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        call.candidates_added += 1
    return Response(status_code=204)


def _with_status(exc: InvalidToken) -> InvalidToken:
    exc.status = TOKEN_STATUS.get(type(exc), exc.status)
    return exc


def _token_problem(check: Callable[[], object]) -> None:
    """Run a token check; its error becomes the HTTP problem whose status mirrors the close code."""
    try:
        check()
    except InvalidToken as exc:
        raise _with_status(exc) from None


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
