"""Mounts the real-time endpoints on the app (the only FastAPI-aware module of ``realtime``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from fastapi import APIRouter, WebSocket

from callgate.auth import tokens
from callgate.domain import calls
from callgate.domain.lifecycle import EndReason
from callgate.errors import (
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
from callgate.realtime.engines import build_engines, pipeline_options
from callgate.realtime.session import CallContext, CallSession
from callgate.realtime.websocket.transport import (
    CloseCode,
    Disconnected,
    WebSocketTransport,
    handshake,
    output_rate,
)
from callgate.runtime import Runtime
from callgate.store.models import Agent, Call

log = logging.getLogger(__name__)
router = APIRouter()


def _token_close_code(exc: CallgateError) -> int:
    if isinstance(exc, TokenExpired):
        return CloseCode.EXPIRED
    if isinstance(exc, TokenReused):
        return CloseCode.TOKEN_REUSED
    if isinstance(exc, TokenMismatch):
        return CloseCode.TOKEN_MISMATCH
    return CloseCode.INVALID_TOKEN


async def _fail(runtime: Runtime, call: Call, reason: EndReason) -> None:
    """The caller joined but no session started: end the call with ``reason``."""
    now = runtime.clock.now()
    with contextlib.suppress(CallgateError):
        await runtime.db.write(
            lambda s: calls.finish_call(s, team_id=call.team_id, call_id=call.id, reason=reason, now=now)
        )


Redeem = Callable[[datetime], Awaitable[tokens.CallToken]]
"""Verifies and consumes the caller's token at a given time; raises an ``InvalidToken`` error."""


async def _join(runtime: Runtime, transport: WebSocketTransport, redeem: Redeem) -> tuple[Call, Agent] | None:
    """Redeem the token and join its call, or close the socket with the documented code."""
    refusal = runtime.admission.refusal()
    if refusal is not None:  # before the token is spent: the caller may try again
        await transport.close(CloseCode.TRY_AGAIN_LATER, refusal)
        return None
    now = runtime.clock.now()
    try:
        claims = await redeem(now)
    except InvalidToken as exc:
        await transport.close(_token_close_code(exc), exc.detail)
        return None
    except CallgateError as exc:  # the token store is unavailable: not the caller's fault
        await transport.close(CloseCode.TRY_AGAIN_LATER, exc.detail)
        return None
    try:
        call = await runtime.db.write(
            lambda s: calls.join_call(s, team_id=claims.team_id, call_id=claims.call_id, now=now)
        )
        async with runtime.db.read() as s:
            agent = await s.get(Agent, call.agent_id)
    except ConcurrencyLimited as exc:
        await transport.close(CloseCode.CONCURRENCY, exc.detail)
        return None
    except (NotFound, IllegalTransition):
        await transport.close(CloseCode.NOT_FOUND, "the call does not exist or has already ended")
        return None
    except CallgateError as exc:
        log.warning("joining a call failed: %s", exc.detail)
        await transport.close(CloseCode.TRY_AGAIN_LATER, "the server is busy; try again")
        return None
    assert agent is not None
    return call, agent


@router.websocket("/v1/calls/{call_id}/ws")
async def call_websocket(ws: WebSocket, call_id: str, token: str = "") -> None:
    runtime: Runtime = ws.app.state.runtime

    async def redeem(now: datetime) -> tokens.CallToken:
        return await tokens.redeem(
            token,
            key=runtime.signing_key,
            now=now,
            call_id=call_id,
            transport="websocket",
            ledger=runtime.ledger,
        )

    await serve_call(ws, redeem)


async def serve_call(ws: WebSocket, redeem: Redeem) -> None:
    """Run one call over this RTVI WebSocket once ``redeem`` vouches for the caller.

    A dialect whose tokens differ (OneInbox's LiveKit-shaped ``participant_token``) mounts its own
    WebSocket route and passes its own ``redeem``; everything after the token is the same.
    """
    runtime: Runtime = ws.app.state.runtime
    await ws.accept()
    transport = WebSocketTransport(ws)
    joined = await _join(runtime, transport, redeem)
    if joined is None:
        return
    call, agent = joined
    try:
        ready = await handshake(transport)
        rate = output_rate(ready)
        requested_mode = ready.data.get("mode", call.mode)
        if requested_mode not in MODES:
            raise rtvi.ProtocolError(f"mode must be one of {MODES}")
    except Disconnected:
        await _fail(runtime, call, EndReason.TRANSPORT_LOST)
        return
    except rtvi.ProtocolError as exc:
        await transport.close(CloseCode.PROTOCOL, str(exc))
        await _fail(runtime, call, EndReason.TRANSPORT_LOST)
        return
    try:
        engines = await build_engines(runtime, agent=agent, call=call)
    except CallgateError as exc:
        log.error("cannot build the call's engines: %s", exc.detail, extra={"call": call.id})
        await transport.send_message(rtvi.message("error", {"message": exc.detail, "fatal": True}))
        await transport.close(CloseCode.SERVER_ERROR, "agent misconfigured")
        await _fail(runtime, call, EndReason.SERVER_ERROR)
        return
    session = CallSession(
        runtime=runtime,
        context=CallContext(
            call_id=call.id,
            team_id=call.team_id,
            mode=requested_mode,
            max_duration_s=agent.max_duration_s,
            silence_timeout_s=agent.silence_timeout_s,
            data=dict(call.data),
        ),
        transport=transport,
        engines=engines,
        options=pipeline_options(agent, mode=requested_mode, output_sample_rate=rate),
    )
    await transport.send_message(
        rtvi.message(
            "bot-ready",
            {
                "version": rtvi.PROTOCOL_VERSION,
                "about": {"server": "callgate"},
                "call_id": call.id,
                "mode": requested_mode,
                "audio": {"input_sample_rate": 16000, "output_sample_rate": rate},
            },
            id_=ready.id,
        )
    )
    run = asyncio.create_task(session.run(), name=f"session-{call.id}")
    pump = asyncio.create_task(_pump(transport, session), name=f"pump-{call.id}")
    try:
        await run
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


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
        session.end(EndReason.CALLER_HANGUP if exc.code in (1000, 1001) else EndReason.TRANSPORT_LOST)
    except rtvi.ProtocolError as exc:
        await session.send_error(str(exc), fatal=True)
        await transport.close(CloseCode.TOO_BIG if "too large" in str(exc) else CloseCode.PROTOCOL, str(exc))
        session.end(EndReason.TRANSPORT_LOST)
