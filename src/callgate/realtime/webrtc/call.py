"""One WebRTC call after its SDP answer: connect, handshake, run the session, clean up.

The HTTP route (:mod:`.endpoint`) negotiates, joins and hands the call to :class:`WebRTCCall`, which runs
in a task owned by :class:`LiveCalls` and starts its session like every transport
(:class:`~callgate.realtime.start.CallStarter`). Key presses (RFC 4733 telephone-events) go to the
session's digit collector, as over SIP: one typed caller turn, ``"DTMF 12#"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.errors import AgentMisconfigured
from callgate.pipeline.options import MODES, Mode
from callgate.realtime import rtvi
from callgate.realtime.media import PeerMedia
from callgate.realtime.session import CallSession
from callgate.realtime.start import CallStarter, run_session
from callgate.realtime.webrtc.transport import CONNECT_TIMEOUT_S, Disconnected, WebRTCTransport, handshake

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0
PROTOCOL_ERROR = 4400
SERVER_ERROR = 1011


class WebRTCCall:
    def __init__(
        self,
        starter: CallStarter,
        plan: CallPlan,
        *,
        media: PeerMedia,
        transport: WebRTCTransport,
        token: str = "",
    ) -> None:
        self.starter = starter
        self.plan = plan
        self.media = media
        self.transport = transport
        self.token = token
        """The call token that made this peer connection (it alone may trickle candidates to it)."""
        self.pc_id = f"pc_{secrets.token_urlsafe(16)}"
        self.candidates_added = 0
        self.session: CallSession | None = None
        self._ready_id: str | None = None
        transport.on_dtmf = lambda event: self.session.press_key(event.digit) if self.session else None

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            await self.media.close()

    async def _run(self) -> None:
        plan, starter = self.plan, self.starter
        try:
            mode = await self._connect()
        except (Disconnected, TimeoutError):
            log.info("the WebRTC peer never connected", extra={"call": plan.call_id})
            await starter.fail(plan, EndReason.TRANSPORT_LOST)
            return
        except rtvi.ProtocolError as exc:
            await self._fatal(str(exc))
            await self.transport.close(PROTOCOL_ERROR, str(exc))
            await starter.fail(plan, EndReason.TRANSPORT_LOST)
            return
        rate = self.media.output_rate
        try:
            session = await starter.start(plan, transport=self.transport, mode=mode, output_sample_rate=rate)
        except AgentMisconfigured as exc:
            await self._fatal(exc.detail)
            await self.transport.close(SERVER_ERROR, "agent misconfigured")
            return
        self.session = session
        await self.transport.send_message(
            rtvi.message(
                "bot-ready",
                {
                    "version": rtvi.PROTOCOL_VERSION,
                    "about": {"server": "callgate", "transport": "webrtc"},
                    "call_id": plan.call_id,
                    "mode": mode,
                    "audio": {
                        "input_sample_rate": 16000,
                        "output_sample_rate": rate,
                        "codec": self.media.codec,
                    },
                },
                id_=self._ready_id,
            )
        )
        self.transport.on_audio = session.push_audio
        await run_session(session, lambda: self._pump(session))

    async def _connect(self) -> Mode:
        """ICE + DTLS, then ``client-ready`` on the data channel (if the offer asked for one)."""
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            if not await self.media.wait_connected():
                raise Disconnected(clean=False)
            if not self.media.offered_channel:
                return _mode(self.plan.mode)
            if not await self.media.wait_channel():
                raise Disconnected(clean=False)
        ready = await handshake(self.transport)
        self._ready_id = ready.id
        return _mode(ready.data.get("mode", self.plan.mode))

    async def _fatal(self, text: str) -> None:
        await self.transport.send_message(rtvi.message("error", {"message": text, "fatal": True}))

    async def _pump(self, session: CallSession) -> None:
        """Move data-channel messages into the session until the peer leaves or misbehaves."""
        try:
            while True:
                await session.handle_message(rtvi.parse(await self.transport.receive()))
        except Disconnected as exc:
            session.end(EndReason.CALLER_HANGUP if exc.clean else EndReason.TRANSPORT_LOST)
        except rtvi.ProtocolError as exc:
            await session.send_error(str(exc), fatal=True)
            await self.transport.close(PROTOCOL_ERROR, str(exc))
            session.end(EndReason.TRANSPORT_LOST)


def _mode(value: object) -> Mode:
    for mode in MODES:
        if value == mode:
            return mode
    raise rtvi.ProtocolError(f"mode must be one of {MODES}")


class LiveCalls:
    """The WebRTC calls running on this node; :meth:`end_all` ends them at shutdown."""

    def __init__(self) -> None:
        self._calls: dict[asyncio.Task[None], WebRTCCall] = {}
        self._by_pc_id: dict[str, WebRTCCall] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def find(self, pc_id: str) -> WebRTCCall | None:
        """The running call whose peer connection is ``pc_id``."""
        return self._by_pc_id.get(pc_id)

    def start(self, call: WebRTCCall) -> None:
        task = asyncio.create_task(call.run(), name=f"webrtc-{call.plan.call_id}")
        self._calls[task] = call
        self._by_pc_id[call.pc_id] = call
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        call = self._calls.pop(task, None)
        if call is not None:
            self._by_pc_id.pop(call.pc_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("a WebRTC call crashed", exc_info=task.exception())

    async def end_all(self) -> None:
        for task, call in list(self._calls.items()):
            if call.session is not None:
                call.session.end(EndReason.TRANSPORT_LOST)
            else:
                task.cancel()
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=SHUTDOWN_GRACE_S)
        for task in list(self._calls):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
