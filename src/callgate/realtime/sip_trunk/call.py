"""One answered SIP trunk call: its dialog, its plain RTP media and the :class:`CallSession` on them.

Made once the call's 200 OK is ready (we answered an INVITE, or the carrier answered ours). From then
on :meth:`TrunkCall.run` (one task, owned by the listener) waits for the ACK when we answered
(re-sending the 200 on T1 doubling to T2), runs the session, and releases the media. Ending:

- the carrier's BYE → ``caller_hangup``;
- the session ends for any other reason (the agent, ``POST /v1/calls/{id}/end``, limits) → the session
  closes its transport → our BYE (its ``Reason`` names the end reason);
- no ACK within 64*T1, or no RTP for ``inactivity_s`` (not while held) → ``transport_lost``, and a BYE.

Inside the dialog: a re-INVITE is answered with the same media (hold: ``sendonly``/``inactive`` is
mirrored and the inactivity timer waits; unhold resumes), RFC 4733 keys and SIP INFO ``dtmf-relay``
go to :meth:`CallSession.press_key`, OPTIONS and INFO get 200; a NOTIFY of our REFER's progress
(``message/sipfrag``) is kept for the transfer.

A session that ends ``transferred`` (a flow's ``transfer`` step, the ``transfer_call`` action) sends no
BYE: the call's task hands the still-live dialog to :mod:`.transfer` (REFER, or a bridged second leg)
before it releases the media.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable

from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.realtime.media.inbound import InboundStats
from callgate.realtime.media.rtp_session import RtpSession
from callgate.realtime.media.telephone_events import DtmfEvent
from callgate.realtime.session import CallSession
from callgate.realtime.sip.message import Request
from callgate.realtime.sip_trunk import sdp
from callgate.realtime.sip_trunk.dialog import TrunkDialog
from callgate.realtime.sip_trunk.transactions import T1, T2, Channel, ClientTransaction, ServerTransaction
from callgate.realtime.sip_trunk.uac import Credentials
from callgate.realtime.start import CallStarter, run_session

__all__ = ["RtpCallTransport", "TrunkCall", "TrunkCallState"]

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 64 * T1
MAX_REFER_NOTIFIES = 16
_SIGNAL = re.compile(r"^\s*Signal\s*=\s*([0-9*#A-Da-d])\s*$", re.MULTILINE)
_SIPFRAG = re.compile(r"^SIP/2\.0\s+(\d{3})")


class TrunkCallState(enum.Enum):
    ANSWERED = "answered"
    """Our 200 OK is out, its ACK has not come."""
    ACTIVE = "active"
    ENDED = "ended"


class RtpCallTransport:
    """The session's transport for a trunk call: agent audio (8 kHz) into the paced RTP stream; of the
    RTVI messages only ``bot-interrupted`` matters (it drops the queued agent audio: barge-in);
    closing sends the BYE. It presses keys on the line (the ``send_dtmf`` tool) as RFC 4733 events
    in the RTP stream (:class:`~callgate.realtime.tools.SendsDigits`)."""

    media_transport = "sip_trunk"

    def __init__(
        self,
        rtp: RtpSession,
        *,
        hang_up: Callable[[str], None],
        transfer: Callable[[str], None] | None = None,
    ) -> None:
        self._rtp = rtp
        self._hang_up = hang_up
        self._transfer = transfer
        self._transfer_target: str | None = None
        self._closed = False

    def caller_media(self) -> InboundStats:
        return self._rtp.inbound_stats

    async def send_audio(self, pcm16: bytes) -> None:
        self._rtp.send_audio(pcm16)

    async def send_digits(self, digits: str) -> None:
        """Key presses as RFC 4733 events; ValueError when the far end did not negotiate them."""
        await self._rtp.send_digits(digits)

    async def send_message(self, text: str) -> None:
        if '"bot-interrupted"' in text:
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(text).get("type") == "bot-interrupted":
                    self._rtp.flush()
        elif '"transfer"' in text:
            with contextlib.suppress(ValueError, AttributeError):
                msg = json.loads(text)
                data = msg.get("data") or {}
                if msg.get("type") == "server-message" and data.get("type") == "transfer":
                    self._transfer_target = str(data.get("target") or "") or None

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        if self._transfer_target and self._transfer is not None and reason.endswith("transferred"):
            self._transfer(self._transfer_target)  # the call's task transfers instead of a BYE
        else:
            self._hang_up(reason)


Transfer = Callable[["TrunkCall", str], Awaitable[None]]
"""Hand a call whose session ended ``transferred`` to its target (:class:`~.transfer.Transfers`)."""


class Signalling:
    """What a call needs of the listener: send a request in a client transaction (fire and forget, or
    ``transact`` to follow its responses), register its dialog, and who transfers calls."""

    def __init__(
        self,
        *,
        send_request: Callable[[Channel, bytes, str, str], None],
        transact: Callable[[Channel, bytes, str, str], ClientTransaction],
        forget: Callable[[ClientTransaction], None],
        register: Callable[[str, TrunkCall], None],
        unregister: Callable[[str, TrunkCall], None],
    ) -> None:
        self.send_request = send_request
        self.transact = transact
        self.forget = forget
        self.register = register
        self.unregister = unregister
        self.transfer: Transfer | None = None


class TrunkCall:
    def __init__(
        self,
        *,
        starter: CallStarter,
        plan: CallPlan,
        dialog: TrunkDialog,
        channel: Channel,
        rtp: RtpSession,
        offer: sdp.Offer,
        media_host: str,
        signalling: Signalling,
        answered: bool,
    ) -> None:
        self.starter = starter
        self.plan = plan
        self.call_id = plan.call_id
        self.dialog = dialog
        self.channel = channel
        self.rtp = rtp
        self.offer = offer
        self.session: CallSession | None = None
        self.state = TrunkCallState.ANSWERED if answered else TrunkCallState.ACTIVE
        self.held = False
        self._media_host = media_host
        self._signalling = signalling
        self._answered = answered
        self.ok: bytes | None = None
        """Our 200 OK, re-sent until its ACK (when we answered)."""
        self._acked = asyncio.Event()
        self._ended = asyncio.Event()
        self._reason: EndReason | None = None
        self._sdp_session = secrets.randbelow(2**62)
        self.sdp_session = secrets.randbelow(2**62)
        """The SDP session id of our descriptions in this call (the version counts up per answer)."""
        self._sdp_version = 1
        self.credentials: Credentials | None = None
        """The carrier's digest credentials (outbound calls): a bridged transfer leg answers with them."""
        self.transfer_target: str | None = None
        self.refer_progress: asyncio.Queue[int] = asyncio.Queue()
        """The status codes of the NOTIFYs (``message/sipfrag``) about our REFER."""
        self.relay: Callable[[bytes], None] | None = None
        """While bridged (a transfer leg), where the caller's audio (16 kHz PCM) goes."""

    def _set_state(self, state: TrunkCallState) -> None:
        if state is not self.state:
            log.info("trunk call %s -> %s", self.state.value, state.value, extra={"call": self.call_id})
            self.state = state

    # ------------------------------------------------------------------ media callbacks

    def audio(self, pcm16: bytes) -> None:
        if self.relay is not None:
            self.relay(pcm16)
        elif self.session is not None:
            self.session.push_audio(pcm16)

    def dtmf(self, event: DtmfEvent) -> None:
        if self.session is not None and event.digit != "!":
            self.session.press_key(event.digit)

    def media_timeout(self) -> None:
        log.warning("no RTP from the far end: the call is lost", extra={"call": self.call_id})
        self.end(EndReason.TRANSPORT_LOST)

    # ------------------------------------------------------------------ ending

    def end(self, reason: EndReason) -> None:
        if self._reason is None:
            self._reason = reason
        self._ended.set()
        if self.session is not None:
            self.session.end(reason)

    @property
    def ended(self) -> asyncio.Event:
        """Set once the far end hung up, the media timed out or the node ends the call."""
        return self._ended

    def transfer_to(self, target: str) -> None:
        """The session ended ``transferred`` to ``target``: :meth:`run` transfers rather than BYE."""
        self.transfer_target = target

    def hang_up(self, reason: str) -> None:
        """Send our BYE unless the dialog already ended."""
        if not self.dialog.live:
            return
        data, branch = self.dialog.bye(reason=reason)
        self._signalling.send_request(self.channel, data, branch, "BYE")

    # ------------------------------------------------------------------ requests in the dialog

    def on_ack(self, request: Request) -> None:
        if request.cseq >= self.dialog.remote_cseq or not self._acked.is_set():
            self._acked.set()

    def on_request(self, request: Request, tx: ServerTransaction) -> None:
        if not self.dialog.accept_cseq(request):
            tx.send(500, reason="CSeq Out of Order")
            return
        method = request.method
        if method == "BYE":
            tx.send(200)
            self.dialog.live = False
            self.end(EndReason.CALLER_HANGUP)
        elif method == "INVITE":
            self._reinvite(request, tx)
        elif method == "INFO":
            tx.send(200)
            found = _SIGNAL.search(request.body.decode("utf-8", errors="replace"))
            if found and self.session is not None:
                self.session.press_key(found.group(1).upper())
        elif method == "NOTIFY":
            tx.send(200)
            event = (request.header("Event") or "").split(";", 1)[0].strip().lower()
            found = _SIPFRAG.match(request.body.decode("utf-8", errors="replace").lstrip())
            if event == "refer" and found and self.refer_progress.qsize() < MAX_REFER_NOTIFIES:
                self.refer_progress.put_nowait(int(found.group(1)))  # bounded: a far end may flood
        elif method in ("OPTIONS", "UPDATE"):
            tx.send(200)
        else:
            tx.send(405, headers=[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY")])

    def _reinvite(self, request: Request, tx: ServerTransaction) -> None:
        offer = self.offer
        if request.body:
            try:
                offer = sdp.parse_offer(request.body)
            except sdp.NoCommonCodec as exc:
                tx.send(488, headers=[("Warning", f'304 callgate "{exc}"')])
                return
        if offer.codec.name != self.rtp.codec.name:
            tx.send(488, headers=[("Warning", '304 callgate "the codec cannot change mid-call"')])
            return
        self.offer = offer
        held = offer.direction in ("sendonly", "inactive") or ipaddress.ip_address(offer.host).is_unspecified
        if held != self.held:
            log.info("call %s", "held" if held else "resumed", extra={"call": self.call_id})
        self.held = held
        self.rtp.hold(held)
        if not held:
            self.rtp.start((offer.host, offer.port))
        self._sdp_version += 1
        answer = sdp.answer(
            offer,
            host=self._media_host,
            port=self.rtp.local_port,
            session_id=self.sdp_session,
            version=self._sdp_version,
        )
        tx.to_tag = self.dialog.local_tag or tx.to_tag
        tx.send(
            200,
            headers=[("Contact", f"<{self.dialog.local_contact}>"), ("Content-Type", "application/sdp")],
            body=answer,
        )

    # ------------------------------------------------------------------ the call's task

    def adopt(self) -> None:
        """Register the dialog with the listener (before the 200 leaves, so the ACK finds it)."""
        self._signalling.register(self.dialog.call_id, self)

    async def run(self, session: CallSession) -> EndReason:
        """The call's task (see the module docstring); :meth:`adopt` first."""
        try:
            if self._answered and not await self._wait_ack():
                reason = self._reason or EndReason.TRANSPORT_LOST
                await self.starter.fail(self.plan, reason)
                return reason
            self._set_state(TrunkCallState.ACTIVE)
            self.session = session
            if self._reason is not None:
                session.end(self._reason)
            reason = await run_session(session)
            self.session = None  # over: what the far end still sends (a transfer's wait) goes nowhere
            if reason is EndReason.TRANSFERRED and self.transfer_target and self.dialog.live:
                transfer = self._signalling.transfer
                if transfer is None:
                    self.hang_up("transferred")
                else:
                    try:
                        await transfer(self, self.transfer_target)
                    except Exception:
                        log.exception("the transfer failed", extra={"call": self.call_id})
                        self.hang_up("transfer failed")
            return reason
        finally:
            self._set_state(TrunkCallState.ENDED)
            self._signalling.unregister(self.dialog.call_id, self)
            with contextlib.suppress(Exception):
                await self.rtp.close()

    async def _wait_ack(self) -> bool:
        """Re-send the 200 (UDP) on T1 doubling to T2 until the ACK; False on timeout or an end."""
        interval, waited = T1, 0.0
        while not self._acked.is_set() and not self._ended.is_set() and waited < ACK_TIMEOUT_S:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._acked.wait()
            waited += interval
            interval = min(interval * 2, T2)
            if not self._acked.is_set() and not self.channel.reliable and self.ok is not None:
                self.channel.send(self.ok)
        if not self._acked.is_set():
            # Never ACKed (or ended before the ACK, e.g. no RTP either): the dialog still stands at the
            # far end, so it gets a BYE (§13.3.1.4) unless it already sent one.
            if self._reason is None:
                log.warning("no ACK for the 200 OK", extra={"call": self.call_id})
                self._reason = EndReason.TRANSPORT_LOST
                self.hang_up("no ACK")
            else:
                self.hang_up(self._reason.value)
        return self._acked.is_set() and not self._ended.is_set()
