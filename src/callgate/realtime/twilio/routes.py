"""Twilio's three ways into callgate: the number's Voice URL (an inbound call), status callbacks (an
outbound call's progress) and the Media Streams WebSocket (a call's audio, both ways).

Every webhook is checked against ``X-Twilio-Signature`` (403 when it does not verify); the media socket
is checked by the single-use call token that the answering TwiML passed as a stream parameter.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response, WebSocket

from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.errors import (
    AgentMisconfigured,
    CallgateError,
    ConcurrencyLimited,
    Forbidden,
    IllegalTransition,
    InvalidToken,
    NotFound,
)
from callgate.pipeline.audio import StreamResampler
from callgate.realtime.media import g711
from callgate.realtime.session import CallSession
from callgate.realtime.start import run_session
from callgate.realtime.twilio import media, twiml
from callgate.realtime.twilio.service import TwilioService
from callgate.realtime.twilio.signature import FormParams, candidate_urls, valid
from callgate.realtime.twilio.transport import TwilioTransport

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/telephony/twilio", include_in_schema=False)

START_TIMEOUT_S = 10.0
MAX_FORM_BYTES = 65_536
NOT_IN_SERVICE = "The number you have called is not in service."


class CloseCode:
    NORMAL = 1000
    TOO_BIG = 1009
    SERVER_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    PROTOCOL = 4400
    INVALID_TOKEN = 4401
    NOT_FOUND = 4404
    CONCURRENCY = 4429


def _xml(document: str) -> Response:
    return Response(document, media_type="application/xml")


def _forbidden() -> Response:
    return Response("the request's X-Twilio-Signature does not verify", status_code=403)


async def _form(request: Request) -> FormParams:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return FormParams()
    # Blank values count: Twilio signs every parameter it posts, empty ones too.
    return FormParams.of(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _signed(twilio: TwilioService, request: Request, params: FormParams, auth_token: str) -> bool:
    urls = candidate_urls(str(request.url), twilio.settings.public_url)
    return valid(
        auth_token=auth_token, urls=urls, params=params, signature=request.headers.get("X-Twilio-Signature")
    )


@router.post("/voice")
async def voice(request: Request) -> Response:
    """A call to one of the team's Twilio numbers: answered with ``<Connect><Stream>`` to the agent."""
    twilio: TwilioService = request.app.state.twilio
    params = await _form(request)
    try:
        route = await twilio.records.route(params.first("To"))
    except CallgateError as exc:
        log.warning("cannot look up the called number: %s", exc.detail)
        return _xml(twiml.reject("busy"))
    if route is None:
        return _xml(twiml.say_and_hang_up(NOT_IN_SERVICE))
    if not _signed(twilio, request, params, route.account.auth_token):
        return _forbidden()
    if params.first("AccountSid") != route.account.account_sid:
        return _forbidden()
    if twilio.starter.refusal() is not None:  # this node is full: the caller may call again
        return _xml(twiml.reject("busy"))
    try:
        call_id = await twilio.records.create_inbound(
            route,
            from_number=params.first("From"),
            call_sid=params.first("CallSid"),
            join_within_s=twilio.settings.join_deadline_s,
        )
    except (ConcurrencyLimited, Forbidden) as exc:  # the team's live-call cap, no credits left
        log.info("inbound Twilio call refused: %s", exc.detail)
        return _xml(twiml.reject("busy"))
    except CallgateError as exc:
        log.warning("cannot take an inbound Twilio call: %s", exc.detail)
        return _xml(twiml.reject("busy"))
    base = twilio.public_base(str(request.base_url))
    document = twilio.stream_twiml(
        call_id=call_id, team_id=route.team_id, http_base=base, ttl_s=twilio.settings.join_deadline_s
    )
    return _xml(document)


@router.post("/status", status_code=204)
async def status(request: Request, call: str = "") -> Response:
    """Twilio's progress of an outbound call (the ``StatusCallback`` of its creation)."""
    twilio: TwilioService = request.app.state.twilio
    params = await _form(request)
    found = await twilio.records.call(call) if call else None
    if found is None or found.account is None:
        return _forbidden()  # nothing to check the signature against
    if not _signed(twilio, request, params, found.account.auth_token):
        return _forbidden()
    call_sid, call_status = params.first("CallSid"), params.first("CallStatus")
    if found.call_sid is not None and call_sid and call_sid != found.call_sid:
        return _forbidden()
    log.info("Twilio call status %s", call_status, extra={"call": call})
    ended = await twilio.records.apply_status(call, call_status)
    if ended is not None:  # the call had joined: its session (on any node) hangs up
        await twilio.starter.services.control.publish_end(call, ended)
    return Response(status_code=204)


# --- the media stream -------------------------------------------------------------------------------


async def _next_event(ws: WebSocket) -> media.Event | None:
    """The next event, or None when Twilio closed the socket. Raises ``MediaStreamError``."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text, data = message.get("text"), message.get("bytes")
    return media.parse(text if text is not None else data or b"")


async def _start(ws: WebSocket) -> media.Start | None:
    """Wait for ``start`` (after ``connected``); close the socket and return None on anything else."""
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                event = await _next_event(ws)
                if event is None:
                    return None
                if isinstance(event, media.Start):
                    return event
                if not isinstance(event, media.Connected | media.Unknown):
                    raise media.MediaStreamError("the stream sent media before start")
    except TimeoutError:
        await ws.close(CloseCode.PROTOCOL, "no start event within 10 s")
    except media.MediaStreamError as exc:
        await ws.close(CloseCode.PROTOCOL, str(exc)[:120])
    return None


async def _join(twilio: TwilioService, ws: WebSocket, start: media.Start) -> CallPlan | None:
    starter = twilio.starter
    call_id, token = start.parameters.get("call_id", ""), start.parameters.get("token", "")
    if starter.refusal() is not None:
        await ws.close(CloseCode.TRY_AGAIN_LATER, "this node is too busy")
        return None
    try:
        claims = await starter.redeem(token, call_id=call_id, transport="twilio")
        return await starter.join(team_id=claims.team_id, call_id=claims.call_id)
    except InvalidToken as exc:
        await ws.close(CloseCode.INVALID_TOKEN, exc.detail[:120])
    except ConcurrencyLimited as exc:
        await ws.close(CloseCode.CONCURRENCY, exc.detail[:120])
    except (NotFound, IllegalTransition):
        await ws.close(CloseCode.NOT_FOUND, "the call does not exist or has already ended")
    except CallgateError as exc:
        log.warning("joining a Twilio call failed: %s", exc.detail)
        await ws.close(CloseCode.TRY_AGAIN_LATER, "the server is busy")
    return None


@router.websocket("/media")
async def media_stream(ws: WebSocket) -> None:
    twilio: TwilioService = ws.app.state.twilio
    await ws.accept()
    start = await _start(ws)
    if start is None:
        return
    plan = await _join(twilio, ws, start)
    if plan is None:
        return
    try:
        found = await twilio.records.call(plan.call_id)
    except CallgateError:
        found = None
    rest = twilio.rest(found.account) if found is not None and found.account is not None else None
    call_sid = (found.call_sid if found is not None else None) or start.call_sid
    transport = TwilioTransport(
        ws, stream_sid=start.stream_sid, call_sid=call_sid, rest=rest, call_id=plan.call_id
    )
    try:
        session = await twilio.starter.start(plan, transport=transport, mode="audio", output_sample_rate=8000)
    except AgentMisconfigured:
        await transport.close(CloseCode.SERVER_ERROR, "agent misconfigured")
        return
    await run_session(session, lambda: _pump(ws, transport, session))


async def _pump(ws: WebSocket, transport: TwilioTransport, session: CallSession) -> None:
    """Move the caller's audio, keys and mark echoes into the call until the stream stops."""
    # QQ: soxr's low-latency filter, as for RTP; VAD and STT care about delay more than aliasing.
    upsample = StreamResampler(8000, 16000, quality="QQ")
    try:
        while True:
            event = await _next_event(ws)
            match event:
                case None:  # the socket dropped without a stop: the call may still be up
                    session.end(EndReason.TRANSPORT_LOST)
                    return
                case media.Media(ulaw=ulaw):
                    session.push_audio(upsample.process(g711.decode(ulaw, "PCMU")))
                case media.Dtmf(digit=digit):
                    session.press_key(digit)
                case media.Mark(name=name):
                    transport.played(name)
                case media.Stop():
                    transport.stopped()
                    session.end(EndReason.CALLER_HANGUP)
                    return
                case media.Start():
                    raise media.MediaStreamError("the stream already started")
                case _:  # connected, events of a later protocol version
                    pass
    except media.MediaStreamError as exc:
        log.warning("bad Media Streams frame: %s", exc, extra={"call": session.call_id})
        code = CloseCode.TOO_BIG if "too large" in str(exc) else CloseCode.PROTOCOL
        await transport.close(code, str(exc))  # before ending: the session's end cancels this pump
        session.end(EndReason.TRANSPORT_LOST)
