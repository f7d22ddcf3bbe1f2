"""Mounts the RTVI WebSocket at ``/v1/calls/{call_id}/ws`` and runs calls over it.

Flow of one connection: accept → admission → redeem the call token and join the call (close 44xx on
failure, see ``docs/realtime-protocol.md``) → wait for ``client-ready`` → the session starts
(:class:`~callgate.realtime.start.CallStarter`) → ``bot-ready`` → the session runs while :func:`_pump`
moves frames from the socket into it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket

from callgate.auth import tokens
from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.errors import (
    AgentMisconfigured,
    CallgateError,
    ConcurrencyLimited,
    IllegalTransition,
    InvalidToken,
    NotFound,
    TokenExpired,
    TokenMismatch,
    TokenReused,
)
from callgate.pipeline.options import MODES
from callgate.realtime import rtvi
from callgate.realtime.session import CallSession
from callgate.realtime.start import CallStarter, run_session
from callgate.realtime.websocket.transport import (
    FORMATS,
    OUTPUT_RATES,
    PROTOBUF_OUTPUT_RATE,
    CloseCode,
    Disconnected,
    WebSocketTransport,
    handshake,
    output_rate,
)

log = logging.getLogger(__name__)
router = APIRouter()

CLEAN_CLOSES = (1000, 1001, 1005)
"""A closing handshake from the caller is a hang-up; 1005 is a close frame without a code, which is how
``ws.close()`` ends (pipecat's WebSocketTransport disconnects that way). A dropped connection is 1006."""


def _token_close_code(exc: CallgateError) -> int:
    if isinstance(exc, TokenExpired):
        return CloseCode.EXPIRED
    if isinstance(exc, TokenReused):
        return CloseCode.TOKEN_REUSED
    if isinstance(exc, TokenMismatch):
        return CloseCode.TOKEN_MISMATCH
    return CloseCode.INVALID_TOKEN


Redeem = Callable[[datetime], Awaitable[tokens.CallToken]]
"""Verifies and consumes the caller's token at a given time; raises an ``InvalidToken`` error."""


async def _join(starter: CallStarter, transport: WebSocketTransport, redeem: Redeem) -> CallPlan | None:
    """Redeem the token and join its call, or close the socket with the documented code."""
    refusal = starter.refusal()
    if refusal is not None:  # before the token is spent: the caller may try again
        await transport.close(CloseCode.TRY_AGAIN_LATER, refusal)
        return None
    try:
        claims = await redeem(starter.clock.now())
    except InvalidToken as exc:
        await transport.close(_token_close_code(exc), exc.detail)
        return None
    except CallgateError as exc:  # the token store is unavailable: not the caller's fault
        await transport.close(CloseCode.TRY_AGAIN_LATER, exc.detail)
        return None
    try:
        return await starter.join(team_id=claims.team_id, call_id=claims.call_id)
    except ConcurrencyLimited as exc:
        await transport.close(CloseCode.CONCURRENCY, exc.detail)
    except (NotFound, IllegalTransition):
        await transport.close(CloseCode.NOT_FOUND, "the call does not exist or has already ended")
    except CallgateError as exc:
        log.warning("joining a call failed: %s", exc.detail)
        await transport.close(CloseCode.TRY_AGAIN_LATER, "the server is busy; try again")
    return None


@router.websocket("/v1/calls/{call_id}/ws")
async def call_websocket(
    ws: WebSocket,
    call_id: str,
    token: str = "",
    format_: Annotated[str, Query(alias="format")] = "json",
    output_sample_rate: int | None = None,
) -> None:
    """``format=protobuf``: pipecat's protobuf frames (``@pipecat-ai/websocket-transport``); agent audio
    then defaults to 24 kHz, pipecat's player rate. ``output_sample_rate`` sets that default for
    clients that cannot say it in ``client-ready``."""
    starter: CallStarter = ws.app.state.call_starter

    async def redeem(now: datetime) -> tokens.CallToken:
        return await starter.redeem(token, call_id=call_id, transport="websocket")

    if format_ not in FORMATS or (output_sample_rate is not None and output_sample_rate not in OUTPUT_RATES):
        await ws.accept()  # before the token is spent: the caller can fix the URL
        reason = f"format must be one of {FORMATS}, output_sample_rate one of {OUTPUT_RATES}"
        await WebSocketTransport(ws).close(CloseCode.PROTOCOL, reason)
        return
    await serve_call(ws, redeem, format=format_, output_sample_rate=output_sample_rate)


async def serve_call(
    ws: WebSocket, redeem: Redeem, *, format: str = "json", output_sample_rate: int | None = None
) -> None:
    """Run one call over this RTVI WebSocket once ``redeem`` vouches for the caller.

    A dialect whose tokens differ (OneInbox's LiveKit-shaped ``participant_token``) mounts its own
    WebSocket route and passes its own ``redeem``; everything after the token is the same.
    """
    starter: CallStarter = ws.app.state.call_starter
    await ws.accept()
    transport = WebSocketTransport(ws, format=format)
    plan = await _join(starter, transport, redeem)
    if plan is None:
        return
    default_rate = output_sample_rate or (PROTOBUF_OUTPUT_RATE if transport.protobuf else 16000)
    try:
        ready = await handshake(transport)
        rate = transport.output_rate = output_rate(ready, default=default_rate)
        mode = ready.data.get("mode", plan.mode)
        if mode not in MODES:
            raise rtvi.ProtocolError(f"mode must be one of {MODES}")
    except Disconnected:
        await starter.fail(plan, EndReason.TRANSPORT_LOST)
        return
    except rtvi.ProtocolError as exc:
        await transport.close(CloseCode.PROTOCOL, str(exc))
        await starter.fail(plan, EndReason.TRANSPORT_LOST)
        return
    try:
        session = await starter.start(plan, transport=transport, mode=mode, output_sample_rate=rate)
    except AgentMisconfigured as exc:
        await transport.send_message(rtvi.message("error", {"message": exc.detail, "fatal": True}))
        await transport.close(CloseCode.SERVER_ERROR, "agent misconfigured")
        return
    await transport.send_message(
        rtvi.message(
            "bot-ready",
            {
                "version": rtvi.PROTOCOL_VERSION,
                "about": {"server": "callgate"},
                "call_id": plan.call_id,
                "mode": mode,
                "audio": {"input_sample_rate": 16000, "output_sample_rate": rate},
            },
            id_=ready.id,
        )
    )
    await run_session(session, lambda: _pump(transport, session))


async def _pump(transport: WebSocketTransport, session: CallSession) -> None:
    """Move frames from the socket into the session until the peer leaves or misbehaves."""
    try:
        while True:
            frame = await transport.receive()
            if isinstance(frame, bytes):
                if len(frame) % 2:
                    raise rtvi.ProtocolError("audio frames are PCM16: an even number of bytes")
                session.push_audio(frame)
            else:
                await session.handle_message(rtvi.parse(frame))
    except Disconnected as exc:
        session.end(EndReason.CALLER_HANGUP if exc.code in CLEAN_CLOSES else EndReason.TRANSPORT_LOST)
    except rtvi.ProtocolError as exc:
        await session.send_error(str(exc), fatal=True)
        await transport.close(CloseCode.TOO_BIG if "too large" in str(exc) else CloseCode.PROTOCOL, str(exc))
        session.end(EndReason.TRANSPORT_LOST)
