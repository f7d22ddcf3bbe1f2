"""Placing a phone call through a SIP carrier (RFC 3261 UAC): INVITE, ringing, the answer, or why not.

:meth:`OutboundCalls.dial` starts one task per call: join (created → connecting), bind RTP, send the
INVITE (our offer: PCMU, PCMA, telephone-event) to the carrier's ``outbound`` host/port/transport.
Then, per response (:class:`~callgate.realtime.sip_trunk.uac.InviteClient`):

- 401/407 with a Digest challenge and a password: ACK it and send the INVITE again with credentials
  (once; a second challenge is a refusal);
- 180/183: ringing, until ``ring_timeout_s`` → CANCEL → ``no_answer``;
- 200: ACK, the session starts on the answered codec and runs like any trunk call (:class:`TrunkCall`);
- 486/600 → ``busy``, 603 → ``declined``, any other final answer or none → ``carrier_error``.

``POST /v1/calls/{id}/end`` while ringing reaches the call through the call-control channel: CANCEL
(the API already ended the call ``api_request``). A 200 that crosses our CANCEL is ACKed and BYEd.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.domain.telephony import Dial
from callgate.errors import AgentMisconfigured, CallgateError, ConcurrencyLimited
from callgate.realtime.media.rtp_session import RtpSession
from callgate.realtime.sip_trunk import sdp
from callgate.realtime.sip_trunk.call import RtpCallTransport, Signalling, TrunkCall
from callgate.realtime.sip_trunk.dialog import new_branch, new_tag
from callgate.realtime.sip_trunk.server import SipTrunkServer
from callgate.realtime.sip_trunk.uac import Credentials, Invite, InviteClient, Stop, answered_dialog
from callgate.realtime.start import CallStarter

__all__ = ["OutboundCalls"]

log = logging.getLogger(__name__)


class OutboundCalls:
    def __init__(
        self,
        *,
        server: SipTrunkServer,
        starter: CallStarter,
        signalling: Signalling,
        bind_host: str,
        inactivity_s: float = 30.0,
    ) -> None:
        self._server = server
        self._starter = starter
        self._signalling = signalling
        self._bind_host = bind_host
        self._inactivity_s = inactivity_s

    def dial(self, dial: Dial) -> None:
        """Place ``dial`` in the background (the listener owns the task)."""
        self._server.spawn(self._place(dial))

    async def _place(self, dial: Dial) -> None:
        try:
            plan = await self._starter.join(team_id=dial.team_id, call_id=dial.call_id)
        except ConcurrencyLimited:
            await self._starter.services.records.fail(
                team_id=dial.team_id, call_id=dial.call_id, reason=EndReason.CONCURRENCY_LIMIT
            )
            return
        except CallgateError as exc:
            log.warning("outbound call not joined: %s", exc.detail, extra={"call": dial.call_id})
            return
        attempt = _Attempt(self, dial, plan)
        try:
            await attempt.run()
        except Stop as stop:
            await self._starter.fail(plan, stop.reason)
        except Exception:
            log.exception("outbound call failed", extra={"call": dial.call_id})
            await self._starter.fail(plan, EndReason.SERVER_ERROR)
        finally:
            await attempt.release()


class _Attempt:
    """One outbound call from INVITE to its answer (then its :class:`TrunkCall` runs)."""

    def __init__(self, calls: OutboundCalls, dial: Dial, plan: CallPlan) -> None:
        self.calls = calls
        self.dial = dial
        self.plan = plan
        self.call: TrunkCall | None = None
        self.rtp: RtpSession | None = None
        self.credentials = _credentials(dial)
        self.client = InviteClient(
            calls._server,
            credentials=self.credentials,
            ring_timeout_s=dial.ring_timeout_s,
            log_call=plan.call_id,
        )
        self._unregister = calls._starter.services.control.register(plan.call_id, self._end_requested)

    async def _end_requested(self, reason: EndReason) -> None:
        self.client.cancelled.set()

    async def release(self) -> None:
        self._unregister()
        self.client.release()
        if self.rtp is not None and self.call is None:
            await self.rtp.close()

    async def run(self) -> None:
        server, outbound = self.calls._server, self.dial.carrier.outbound
        assert outbound is not None
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(outbound.host, outbound.port, type=2)  # SOCK_DGRAM
            peer = (str(infos[0][4][0]), int(infos[0][4][1]))
            channel = (
                server.udp_channel(peer) if outbound.transport == "udp" else await server.tcp_channel(peer)
            )
        except (OSError, TimeoutError) as exc:
            log.warning("cannot reach the carrier: %s", exc, extra={"call": self.plan.call_id})
            raise Stop(EndReason.CARRIER_ERROR) from exc
        rtp = self.rtp = RtpSession(
            sdp.OFFERED[0],
            on_audio=lambda pcm: self.call.audio(pcm) if self.call is not None else None,
            on_dtmf=lambda event: self.call.dtmf(event) if self.call is not None else None,
            on_timeout=lambda: self.call.media_timeout() if self.call is not None else None,
            inactivity_s=self.calls._inactivity_s,
            name=self.plan.call_id,
        )
        try:
            port = await rtp.open(
                host=self.calls._bind_host, ports=self.calls._starter.settings.rtp_port_range
            )
        except OSError as exc:
            raise Stop(EndReason.SERVER_ERROR) from exc
        media_host = server.media_host(peer)
        session_id = secrets.randbelow(2**62)
        body = sdp.offer(host=media_host, port=port, session_id=session_id)
        domain = outbound.from_domain or outbound.host
        invite = Invite(
            uri=f"sip:{self.dial.to_number}@{outbound.host}:{outbound.port}",
            via=server.via(channel.transport, peer),
            from_=f"<sip:{self.dial.from_number}@{domain}>;tag={new_tag()}",
            to=f"<sip:{self.dial.to_number}@{outbound.host}>",
            call_id=f"{secrets.token_hex(12)}@callgate",
            cseq=1,
            branch=new_branch(),
        )
        contact = server.contact(
            channel.transport, peer, user=self.dial.from_number.lstrip("+") or "callgate"
        )
        answer = await self.client.invite(channel, invite, body, contact)
        # Answered: the dialog, the ACK, then the call runs like an inbound one.
        dialog = answered_dialog(invite, answer, local_contact=contact)
        ack, _ = dialog.request("ACK", cseq=invite.cseq)
        channel.send(ack)
        try:
            remote = sdp.parse_answer(answer.body)
        except sdp.NoCommonCodec:
            channel.send(dialog.bye(reason="no common codec")[0])
            raise Stop(EndReason.CARRIER_ERROR) from None
        if self.client.cancelled.is_set():
            channel.send(dialog.bye(reason="api_request")[0])
            return
        rtp.negotiated(remote.codec)
        call = TrunkCall(
            starter=self.calls._starter, plan=self.plan, dialog=dialog, channel=channel, rtp=rtp,
            offer=remote, media_host=media_host, signalling=self.calls._signalling, answered=False,
        )  # fmt: skip
        call.sdp_session = session_id
        call.credentials = self.credentials
        self._unregister()  # the session registers its own end handler
        try:
            session = await self.calls._starter.start(
                self.plan, mode="audio",
                transport=RtpCallTransport(rtp, hang_up=call.hang_up, transfer=call.transfer_to),
                output_sample_rate=8000,
            )  # fmt: skip
        except AgentMisconfigured:
            channel.send(dialog.bye(reason="server_error")[0])
            await rtp.close()
            return  # the starter ended the call
        self.call = call
        call.adopt()
        rtp.start((remote.host, remote.port))
        log.info("outbound trunk call answered", extra={"call": self.plan.call_id})
        await call.run(session)


def _credentials(dial: Dial) -> Credentials | None:
    """The carrier's digest credentials (the username defaults to the calling number)."""
    outbound, password = dial.carrier.outbound, dial.secrets.outbound_password
    if outbound is None or password is None:
        return None
    return Credentials(outbound.username or dial.from_number, password)
