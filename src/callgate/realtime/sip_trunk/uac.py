"""Sending one INVITE to a carrier and following it to its answer (RFC 3261 UAC): what an outbound call
(:mod:`.outbound`) and a transfer's bridged leg (:mod:`.transfer`) share.

:meth:`InviteClient.invite` sends the INVITE and, per response:

- 401/407 with a Digest challenge and credentials: ACK it and send the INVITE again with them (once;
  a second challenge is a refusal);
- 180/183: ringing, until the ring timeout → CANCEL;
- 2xx: returned (the caller ACKs it through the dialog :func:`answered_dialog` makes);
- anything else, or ``cancelled`` set: :class:`Stop` with the end reason (486/600 ``busy``, 603
  ``declined``, no answer ``no_answer``, cancelled ``api_request``, others ``carrier_error``).

A CANCEL waits a little for its 487 (ACKed); a 2xx that crossed it is ACKed and ended with a BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from dataclasses import dataclass

from callgate.domain.lifecycle import EndReason
from callgate.realtime.sip import digest, message
from callgate.realtime.sip_trunk.dialog import TrunkDialog, contact_uri, new_branch
from callgate.realtime.sip_trunk.server import ALLOW, SipTrunkServer
from callgate.realtime.sip_trunk.transactions import Channel, ClientTransaction, TrunkResponse

__all__ = ["CANCEL_WAIT_S", "Credentials", "Invite", "InviteClient", "Stop", "answered_dialog"]

log = logging.getLogger(__name__)

CANCEL_WAIT_S = 5.0
_PARAM = re.compile(r'(\w+)\s*=\s*("([^"]*)"|[^\s,]+)')
_REASONS = {486: EndReason.BUSY, 600: EndReason.BUSY, 603: EndReason.DECLINED}


class Stop(Exception):
    """The INVITE did not lead to an answered call; ``reason`` says why."""

    def __init__(self, reason: EndReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Credentials:
    """What answers a carrier's digest challenge."""

    username: str
    password: str


@dataclass(slots=True)
class Invite:
    """The INVITE as last sent: what its CANCEL and non-2xx ACK repeat."""

    uri: str
    via: str
    from_: str
    to: str
    call_id: str
    cseq: int
    branch: str


def answered_dialog(invite: Invite, answer: TrunkResponse, *, local_contact: str) -> TrunkDialog:
    """The dialog a 2xx to ``invite`` forms (we are the UAC)."""
    contacts = answer.headers("Contact")
    return TrunkDialog(
        call_id=invite.call_id,
        local_uri=invite.from_,
        remote_uri=answer.header("To") or invite.to,
        remote_target=contact_uri(contacts[0]) if contacts else invite.uri,
        routes=list(reversed(answer.headers("Record-Route"))),
        local_cseq=invite.cseq,
        remote_cseq=0,
        local_contact=local_contact,
        via=invite.via,
    )


class InviteClient:
    """One INVITE's client side (see the module docstring). ``cancelled`` stops it (CANCEL)."""

    def __init__(
        self,
        server: SipTrunkServer,
        *,
        credentials: Credentials | None,
        ring_timeout_s: float,
        log_call: str,
    ) -> None:
        self.server = server
        self.credentials = credentials
        self.ring_timeout_s = ring_timeout_s
        self.cancelled = asyncio.Event()
        self.tx: ClientTransaction | None = None
        self._log = {"call": log_call}

    def release(self) -> None:
        if self.tx is not None:
            self.server.forget_client(self.tx)

    async def invite(self, channel: Channel, invite: Invite, body: bytes, contact: str) -> TrunkResponse:
        """Send the INVITE and follow it to a 2xx (returned) or a reason to stop (:class:`Stop`)."""
        server = self.server
        authorization: tuple[str, str] | None = None
        loop = asyncio.get_running_loop()
        ring_deadline = loop.time() + self.ring_timeout_s
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
            self.release()
            tx = self.tx = server.transact(channel, data, branch=invite.branch, method="INVITE", keep=True)
            while True:
                reply = await self._next(tx, ring_deadline - loop.time())
                if reply is not None and reply.head.method != "INVITE":
                    continue
                if reply is None:  # no answer in time, or cancelled
                    reason = EndReason.API_REQUEST if self.cancelled.is_set() else EndReason.NO_ANSWER
                    await self.cancel(channel, invite, tx)
                    raise Stop(reason)
                if reply.status < 200:
                    if reply.status in (180, 183):
                        log.info("ringing (%d)", reply.status, extra=self._log)
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
            log.info("the carrier answered %d", reply.status, extra=self._log)
            raise Stop(_REASONS.get(reply.status, EndReason.CARRIER_ERROR))

    async def _next(self, tx: ClientTransaction, within_s: float) -> TrunkResponse | None:
        """The next response, or None on the ring timeout or a cancel."""
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

    async def cancel(self, channel: Channel, invite: Invite, tx: ClientTransaction) -> None:
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
                        log.info("a 2xx crossed our CANCEL: ACK and BYE", extra=self._log)
                        dialog = answered_dialog(invite, reply, local_contact=invite.uri)
                        channel.send(dialog.request("ACK", cseq=invite.cseq)[0])
                        channel.send(dialog.bye(reason="cancelled")[0])
                    return

    def _ack_failure(self, channel: Channel, invite: Invite, reply: TrunkResponse) -> None:
        """The ACK of a non-2xx final response: hop-by-hop, in the INVITE's transaction (§17.1.1.3)."""
        headers = [
            ("Via", f"{invite.via};branch={invite.branch};rport"),
            ("From", invite.from_),
            ("To", reply.header("To") or invite.to),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq} ACK"),
        ]
        channel.send(message.request("ACK", invite.uri, headers=headers))

    def _authorize(self, reply: TrunkResponse, invite: Invite) -> tuple[str, str] | None:
        """The Authorization (401) or Proxy-Authorization (407) answering the reply's challenge."""
        if self.credentials is None:
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
            username, password = self.credentials.username, self.credentials.password
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
