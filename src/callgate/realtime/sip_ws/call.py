"""One answered SIP call: its dialog, its WebRTC media and the :class:`CallSession` that talks to it.

Made by :mod:`callgate.realtime.sip_ws.invite` once the 200 OK carrying the media answer is ready. From then
on :meth:`SipCall.run` (one task, owned by the connection) waits for the ACK (re-sending the 200 on
RFC 3261 timers), waits for media to connect, runs the session, and releases the media. Ending:

- the caller's BYE → :meth:`hang_up` → the session ends with ``caller_hangup``;
- the session ends for any other reason (agent ``end_call``, ``POST /v1/calls/{id}/end``, limits) → the
  session closes its transport → :meth:`_send_bye` (the BYE's ``Reason`` names the end reason);
- the WebSocket closes → :meth:`lose` → ``transport_lost``, nothing sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable

from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.realtime.media import DtmfEvent, PeerMedia
from callgate.realtime.session import CallSession
from callgate.realtime.sip.dialog import Dialog
from callgate.realtime.sip.message import Request
from callgate.realtime.start import CallStarter, run_session

log = logging.getLogger(__name__)

Send = Callable[[bytes], Awaitable[None]]
T1_S, T2_S = 0.5, 4.0
ACK_TIMEOUT_S = 64 * T1_S
MEDIA_TIMEOUT_S = 15.0
MEDIA_LOSS_GRACE_S = 2.0
"""A hanging-up softphone closes its peer connection as it sends BYE; wait this long for the BYE before
calling the call lost, so the end reason is right."""


class SipCallState(enum.Enum):
    ANSWERED = "answered"
    """200 OK sent, waiting for the ACK."""
    CONNECTING = "connecting"
    """ACK received, waiting for ICE and DTLS."""
    ACTIVE = "active"
    ENDED = "ended"


class SipCall:
    def __init__(
        self,
        *,
        starter: CallStarter,
        plan: CallPlan,
        dialog: Dialog,
        media: PeerMedia,
        send: Send,
        ok: bytes,
    ) -> None:
        self.starter = starter
        self.plan = plan
        self.call_id = plan.call_id
        self.dialog = dialog
        self.media = media
        self.session: CallSession | None = None
        self.state = SipCallState.ANSWERED
        self.answer_sdp = ""
        self.offer_sdp = ""
        self.sdp_version = 0
        self.held = False
        """The caller put the call on hold (re-offered ``sendonly`` or ``inactive``)."""
        self.reoffer_pending = False
        """A re-INVITE was answered and its ACK has not come yet."""
        self._send = send
        self._ok = ok
        self._acked = asyncio.Event()
        self._reason: EndReason | None = None
        self._ended = asyncio.Event()
        self._grace: asyncio.Task[None] | None = None

    def _set_state(self, state: SipCallState) -> None:
        if state is not self.state:
            log.info("sip call %s -> %s", self.state.value, state.value, extra={"call": self.call_id})
            self.state = state

    # ---------------------------------------------------------------- events from the connection

    def ack(self, request: Request) -> None:
        """An ACK in this dialog: for the initial 200 or for a re-INVITE's."""
        if self.dialog.acknowledge(request):
            self.reoffer_pending = False
            self._acked.set()

    def hang_up(self) -> None:
        """The caller sent BYE (already answered 200 by the connection)."""
        self.dialog.terminate()
        self.end(EndReason.CALLER_HANGUP)

    def lose(self) -> None:
        """The WebSocket is gone: nothing can be sent any more."""
        self.dialog.terminate()
        self.end(EndReason.TRANSPORT_LOST)

    def media_lost(self) -> None:
        """The media closed or failed: the call is lost unless a BYE explains it within the grace."""
        if self._grace is None and self.state is not SipCallState.ENDED:
            self._grace = asyncio.create_task(self._lose_after_grace(), name=f"sip-media-lost-{self.call_id}")

    async def _lose_after_grace(self) -> None:
        await self.starter.clock.sleep(MEDIA_LOSS_GRACE_S)
        self.end(EndReason.TRANSPORT_LOST)

    def end(self, reason: EndReason) -> None:
        if self._reason is None:
            self._reason = reason
        self._ended.set()
        if self.session is not None:
            self.session.end(reason)

    def press_key(self, key: str) -> None:
        """A key press (RFC 4733 or SIP INFO): to the session's digit collector, once the call runs."""
        if self.session is not None:
            self.session.press_key(key)

    def on_dtmf(self, event: DtmfEvent) -> None:
        self.press_key(event.digit)

    # ---------------------------------------------------------------- the call's task

    async def run(self, session: CallSession) -> None:
        try:
            if not await self._wait_ack():
                await self._finish_early(self._reason or EndReason.TRANSPORT_LOST)
                return
            self._set_state(SipCallState.CONNECTING)
            if not await self._wait_media():
                await self._finish_early(self._reason or EndReason.TRANSPORT_LOST)
                return
            self.session = session
            if self._reason is not None:
                session.end(self._reason)
            self._set_state(SipCallState.ACTIVE)
            await run_session(session)
        finally:
            self._set_state(SipCallState.ENDED)  # first: closing the media reports it lost
            if self._grace is not None:
                self._grace.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._grace
            with contextlib.suppress(Exception):
                await self.media.close()

    async def _wait_ack(self) -> bool:
        """Re-send the 200 on T1 doubling to T2 until the ACK; False on timeout or an end meanwhile."""
        interval, waited = T1_S, 0.0
        while not self._acked.is_set() and not self._ended.is_set() and waited < ACK_TIMEOUT_S:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await _first(self._acked.wait(), self._ended.wait())
            waited += interval
            interval = min(interval * 2, T2_S)
            if not self._acked.is_set() and not self._ended.is_set():
                await self._send(self._ok)
        if not self._acked.is_set() and self._reason is None:
            log.warning("no ACK for the 200 OK", extra={"call": self.call_id})
            await self.send_bye("no ACK")
        return self._acked.is_set() and not self._ended.is_set()

    async def _wait_media(self) -> bool:
        connected = asyncio.ensure_future(self.media.wait_connected(MEDIA_TIMEOUT_S))
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({connected, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (connected, ended):
                task.cancel()
            await asyncio.gather(connected, ended, return_exceptions=True)
        ok = connected.done() and not connected.cancelled() and connected.result() is True
        if not ok and self._reason is None:
            log.warning("media did not connect", extra={"call": self.call_id})
            await self.send_bye("media failed")
        return ok and not self._ended.is_set()

    async def _finish_early(self, reason: EndReason) -> None:
        """The call joined but its session never ran: end it in the store."""
        await self.starter.fail(self.plan, reason)

    async def send_bye(self, reason: str) -> None:
        """End the dialog from our side, unless it already ended."""
        if not self.dialog.live:
            return
        self.dialog.terminate()
        with contextlib.suppress(Exception):
            await self._send(self.dialog.bye(reason=reason))


async def _first(*waits: Awaitable[object]) -> None:
    """Return when the first of ``waits`` completes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
