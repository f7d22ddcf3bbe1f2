"""How every call starts, whatever its transport: the one place for admission, joining, engines,
the session, metrics and logging.

A transport (one package under ``realtime/``) turns its protocol into audio frames and messages; for the
rest it asks the node's :class:`CallStarter`, in this order:

1. :meth:`CallStarter.refusal` — is this node too busy? Asked before anything is spent, so the caller
   can try again (WebSocket 1013, HTTP/SIP 503 + ``Retry-After``).
2. :meth:`CallStarter.redeem` (token transports) and :meth:`CallStarter.join` — the call moves
   created → connecting and the domain answers with a :class:`~callgate.domain.live_calls.CallPlan`.
3. The transport's own connecting (ICE, a handshake, an ACK ...). If it fails: :meth:`CallStarter.fail`.
4. :meth:`CallStarter.start` — the call's engines and its :class:`CallSession`, from the plan alone.
5. :func:`run_session` — the session runs while the transport pumps its input into it.

A new transport never repeats token redemption, admission, agent loading or session set-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from callgate.auth import tokens
from callgate.clock import Clock
from callgate.config import Settings
from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.errors import AgentMisconfigured, CallgateError
from callgate.pipeline.options import Mode
from callgate.providers.registry import EngineRegistry
from callgate.realtime.admission import Admission
from callgate.realtime.engines import build_engines, pipeline_options
from callgate.realtime.session import CallSession, CallTransport, SessionServices

__all__ = ["AgentMisconfigured", "CallStarter", "SessionServices", "run_session"]

log = logging.getLogger(__name__)


class CallStarter:
    """The node's one way to start calls (see the module docstring). Built by the runtime."""

    def __init__(
        self,
        *,
        settings: Settings,
        services: SessionServices,
        engines: EngineRegistry,
        admission: Admission,
        ledger: tokens.TokenLedger,
    ) -> None:
        self.settings = settings
        self.services = services
        self.admission = admission
        self._engines = engines
        self._ledger = ledger

    @property
    def clock(self) -> Clock:
        return self.services.clock

    def refusal(self) -> str | None:
        """Why this node takes no new call right now (too many sessions, a lagging loop), or ``None``."""
        refusal = self.admission.refusal()
        if refusal is not None:
            log.info("new call refused: %s", refusal)
        return refusal

    def verify(self, token: str, *, call_id: str, transport: str) -> tokens.CallToken:
        """Check a call token without spending it (raises ``InvalidToken``)."""
        return tokens.verify(
            token, key=self.settings.signing_key, now=self.clock.now(), call_id=call_id, transport=transport
        )

    async def redeem(self, token: str, *, call_id: str, transport: str) -> tokens.CallToken:
        """Verify and consume a call token for ``call_id`` over ``transport`` (raises ``InvalidToken``)."""
        return await tokens.redeem(
            token,
            key=self.settings.signing_key,
            now=self.clock.now(),
            call_id=call_id,
            transport=transport,
            ledger=self._ledger,
        )

    async def join(self, *, team_id: str, call_id: str) -> CallPlan:
        """created → connecting; the plan of the call to run. Raises ``ConcurrencyLimited``, ``NotFound``,
        ``IllegalTransition`` (the call ended or another connection holds it) or another
        ``CallgateError`` (the store is unavailable)."""
        return await self.services.records.join(team_id=team_id, call_id=call_id)

    async def fail(self, plan: CallPlan, reason: EndReason) -> None:
        """The call joined but its session never ran: end it with ``reason``."""
        log.info("call ended before its session ran: %s", reason.value, extra={"call": plan.call_id})
        await self.services.records.fail(team_id=plan.team_id, call_id=plan.call_id, reason=reason)
        self.services.metrics.calls_ended.labels(reason=reason.value).inc()

    async def start(
        self, plan: CallPlan, *, transport: CallTransport, mode: Mode, output_sample_rate: int
    ) -> CallSession:
        """The call's engines and session, ready to :meth:`~CallSession.run`.

        Raises :class:`AgentMisconfigured` (after ending the call ``server_error``) when the agent's
        engines cannot be built; the transport then tells its caller and closes.
        """
        try:
            engines = await build_engines(self._engines, plan, mode=mode)
        except CallgateError as exc:
            log.error("cannot build the call's engines: %s", exc.detail, extra={"call": plan.call_id})
            await self.fail(plan, EndReason.SERVER_ERROR)
            raise AgentMisconfigured(exc.detail) from exc
        log.info(
            "call starting over %s (%s, %d Hz out)",
            plan.transport,
            mode,
            output_sample_rate,
            extra={"call": plan.call_id},
        )
        self.services.metrics.sessions_started.labels(transport=plan.transport).inc()
        return CallSession(
            services=self.services,
            plan=plan,
            transport=transport,
            engines=engines,
            options=pipeline_options(
                plan.agent, mode=mode, output_sample_rate=output_sample_rate, variables=plan.variables
            ),
        )


async def run_session(
    session: CallSession, pump: Callable[[], Coroutine[Any, Any, None]] | None = None
) -> EndReason:
    """Run ``session`` while ``pump`` (the transport's receive loop) feeds it; stop the pump when the
    session ends. The pump ends the session itself when its peer leaves."""
    if pump is None:
        return await session.run()

    def pump_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the transport's receive loop failed", exc_info=task.exception())
            session.end(EndReason.TRANSPORT_LOST)

    pumping = asyncio.create_task(pump(), name=f"pump-{session.call_id}")
    pumping.add_done_callback(pump_done)
    try:
        return await session.run()
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # a failure was logged above
            await pumping
