"""Placing a phone call through a SIP carrier (RFC 3261 UAC): INVITE, ringing, the answer, or why not.

:meth:`OutboundCalls.dial` starts one task per call: join (created → connecting), bind RTP, send the
INVITE (our offer: PCMU, PCMA, telephone-event) to the carrier's ``outbound`` host/port/transport.
Then, per response:

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
import contextlib
import logging
import re
import secrets
from dataclasses import dataclass

from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.domain.telephony import Dial
from callgate.errors import AgentMisconfigured, CallgateError, ConcurrencyLimited
from callgate.realtime.media.rtp_session import RtpSession
from callgate.realtime.sip import digest, message
from callgate.realtime.sip_trunk import sdp
from callgate.realtime.sip_trunk.call import RtpCallTransport, Signalling, TrunkCall
from callgate.realtime.sip_trunk.dialog import TrunkDialog, contact_uri, new_branch, new_tag
from callgate.realtime.sip_trunk.server import ALLOW, SipTrunkServer
from callgate.realtime.sip_trunk.transactions import Channel, ClientTransaction, TrunkResponse
from callgate.realtime.start import CallStarter

__all__ = ["OutboundCalls"]

log = logging.getLogger(__name__)

CANCEL_WAIT_S = 5.0
_PARAM = re.compile(r'(\w+)\s*=\s*("([^"]*)"|[^\s,]+)')
_REASONS = {486: EndReason.BUSY, 600: EndReason.BUSY, 603: EndReason.DECLINED}


class _Stop(Exception):
    def __init__(self, reason: EndReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(slots=True)
class _Invite:
    """The INVITE as last sent: what its CANCEL and non-2xx ACK repeat."""

    uri: str
    via: str
    from_: str
    to: str
    call_id: str
    cseq: int
    branch: str


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
        except _Stop as stop:
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
        self.tx: ClientTransaction | None = None
        self.cancelled = asyncio.Event()
        self._unregister = calls._starter.services.control.register(plan.call_id, self._end_requested)

    async def _end_requested(self, reason: EndReason) -> None:
        self.cancelled.set()

    async def release(self) -> None:
        self._unregister()
        if self.tx is not None:
            self.calls._server.forget_client(self.tx)
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
            raise _Stop(EndReason.CARRIER_ERROR) from exc
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
            raise _Stop(EndReason.SERVER_ERROR) from exc
        media_host = server.media_host(peer)
        session_id = secrets.randbelow(2**62)
        body = sdp.offer(host=media_host, port=port, session_id=session_id)
        domain = outbound.from_domain or outbound.host
        invite = _Invite(
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
        answer = await self._invite(channel, invite, body, contact)
        # Answered: the dialog, the ACK, then the call runs like an inbound one.
        to = answer.header("To") or invite.to
        contacts = answer.headers("Contact")
        dialog = TrunkDialog(
            call_id=invite.call_id,
            local_uri=invite.from_,
            remote_uri=to,
            remote_target=contact_uri(contacts[0]) if contacts else invite.uri,
            routes=list(reversed(answer.headers("Record-Route"))),
            local_cseq=invite.cseq,
            remote_cseq=0,
            local_contact=contact,
            via=invite.via,
        )
        ack, _ = dialog.request("ACK", cseq=invite.cseq)
        channel.send(ack)
        try:
            remote = sdp.parse_answer(answer.body)
        except sdp.NoCommonCodec:
            channel.send(dialog.bye(reason="no common codec")[0])
            raise _Stop(EndReason.CARRIER_ERROR) from None
        if self.cancelled.is_set():
            channel.send(dialog.bye(reason="api_request")[0])
            return
        rtp.negotiated(remote.codec)
        call = TrunkCall(
            starter=self.calls._starter, plan=self.plan, dialog=dialog, channel=channel, rtp=rtp,
            offer=remote, media_host=media_host, signalling=self.calls._signalling, answered=False,
        )  # fmt: skip
        call.sdp_session = session_id
        self._unregister()  # the session registers its own end handler
        try:
            session = await self.calls._starter.start(
                self.plan, transport=RtpCallTransport(rtp, hang_up=call.hang_up), mode="audio",
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

    async def _invite(self, channel: Channel, invite: _Invite, body: bytes, contact: str) -> TrunkResponse:
        """Send the INVITE and follow it to a 2xx (returned) or a reason to stop (:class:`_Stop`)."""
        server = self.calls._server
        authorization: tuple[str, str] | None = None
        loop = asyncio.get_running_loop()
        ring_deadline = loop.time() + self.dial.ring_timeout_s
        while True:
            headers = [
                ("Via", f"{invite.via};branch={invite.branch};rport"),
                ("From", invite.from_),
                ("To", invite.to),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{invite.cseq} INVITE"),
                ("Contact", f"<{contact}>"),
                ("Allow", ALLOW),
                ("Content-Type", "application/sdp"),
                *([authorization] if authorization else []),
            ]
            data = message.request("INVITE", invite.uri, headers=headers, body=body)
            if self.tx is not None:
                server.forget_client(self.tx)
            tx = self.tx = server.transact(channel, data, branch=invite.branch, method="INVITE", keep=True)
            while True:
                reply = await self._next(tx, ring_deadline - loop.time())
                if reply is not None and reply.head.method != "INVITE":
                    continue
                if reply is None:  # no answer in time, or ended by the API
                    reason = EndReason.API_REQUEST if self.cancelled.is_set() else EndReason.NO_ANSWER
                    await self._cancel(channel, invite, tx)
                    raise _Stop(reason)
                if reply.status < 200:
                    if reply.status in (180, 183):
                        log.info("ringing (%d)", reply.status, extra={"call": self.plan.call_id})
                    continue
                if reply.status < 300:
                    return reply
                if reply.head.call_id:  # not our own timeout
                    self._ack_failure(channel, invite, reply)
                break
            if reply.status in (401, 407) and authorization is None:
                authorization = self._authorize(reply, invite)
                if authorization is not None:
                    invite.cseq += 1
                    invite.branch = new_branch()
                    continue
            log.info("the carrier answered %d", reply.status, extra={"call": self.plan.call_id})
            raise _Stop(_REASONS.get(reply.status, EndReason.CARRIER_ERROR))

    async def _next(self, tx: ClientTransaction, within_s: float) -> TrunkResponse | None:
        """The next response, or None on the ring timeout or an end request."""
        if self.cancelled.is_set() or within_s <= 0:
            return None
        got = asyncio.ensure_future(tx.next_response())
        cancelled = asyncio.ensure_future(self.cancelled.wait())
        try:
            await asyncio.wait({got, cancelled}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            if not got.done():
                got.cancel()
            await asyncio.gather(got, cancelled, return_exceptions=True)
        if got.done() and not got.cancelled():
            return got.result()
        return None

    async def _cancel(self, channel: Channel, invite: _Invite, tx: ClientTransaction) -> None:
        """CANCEL the INVITE (§9.1) and wait a little for its 487 (ACKed); a 2xx that crossed it is ACKed
        and ended with a BYE."""
        headers = [
            ("Via", f"{invite.via};branch={invite.branch};rport"),
            ("From", invite.from_),
            ("To", invite.to),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq} CANCEL"),
        ]
        # The CANCEL has the INVITE's branch: its responses reach the INVITE's transaction, told apart
        # by their CSeq method. Sent twice over UDP rather than run as a transaction of its own.
        data = message.request("CANCEL", invite.uri, headers=headers)
        channel.send(data)
        if not channel.reliable:
            channel.send(data)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCEL_WAIT_S):
                while True:
                    reply = await tx.next_response()
                    if reply.head.method != "INVITE" or reply.status < 200:
                        continue
                    if reply.status >= 300:
                        self._ack_failure(channel, invite, reply)
                    else:  # answered as we cancelled: ACK and hang up at once
                        to = reply.header("To") or invite.to
                        contacts = reply.headers("Contact")
                        dialog = TrunkDialog(
                            call_id=invite.call_id, local_uri=invite.from_, remote_uri=to,
                            remote_target=contact_uri(contacts[0]) if contacts else invite.uri,
                            routes=list(reversed(reply.headers("Record-Route"))), local_cseq=invite.cseq,
                            remote_cseq=0, local_contact=invite.uri, via=invite.via,
                        )  # fmt: skip
                        channel.send(dialog.request("ACK", cseq=invite.cseq)[0])
                        channel.send(dialog.bye(reason="cancelled")[0])
                    return

    def _ack_failure(self, channel: Channel, invite: _Invite, reply: TrunkResponse) -> None:
        """The ACK of a non-2xx final response: hop-by-hop, in the INVITE's transaction (§17.1.1.3)."""
        headers = [
            ("Via", f"{invite.via};branch={invite.branch};rport"),
            ("From", invite.from_),
            ("To", reply.header("To") or invite.to),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq} ACK"),
        ]
        channel.send(message.request("ACK", invite.uri, headers=headers))

    def _authorize(self, reply: TrunkResponse, invite: _Invite) -> tuple[str, str] | None:
        """The Authorization (401) or Proxy-Authorization (407) answering the reply's challenge."""
        outbound, password = self.dial.carrier.outbound, self.dial.secrets.outbound_password
        if outbound is None or password is None:
            return None
        name = "WWW-Authenticate" if reply.status == 401 else "Proxy-Authenticate"
        for challenge in reply.headers(name):
            scheme, _, rest = challenge.strip().partition(" ")
            if scheme.lower() != "digest":
                continue
            params = {m.group(1).lower(): m.group(3) if m.group(3) is not None else m.group(2)
                      for m in _PARAM.finditer(rest)}  # fmt: skip
            algorithm = params.get("algorithm", "MD5").upper()
            if algorithm not in ("MD5", "SHA-256") or "nonce" not in params:
                continue
            h = digest.HASHES[algorithm]
            username = outbound.username or self.dial.from_number
            realm, nonce = params.get("realm", ""), params["nonce"]
            ha1, ha2 = h(f"{username}:{realm}:{password}"), h(f"INVITE:{invite.uri}")
            fields = [
                f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{invite.uri}"',
                f"algorithm={algorithm}",
            ]  # fmt: skip
            qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
            if "auth" in qops:
                cnonce, nc = secrets.token_hex(8), "00000001"
                response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
                fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
            else:
                response = h(f"{ha1}:{nonce}:{ha2}")
            fields.append(f'response="{response}"')
            if "opaque" in params:
                fields.append(f'opaque="{params["opaque"]}"')
            header = "Authorization" if reply.status == 401 else "Proxy-Authorization"
            return header, "Digest " + ", ".join(fields)
        return None
