"""Handing a SIP trunk call to a human: a blind transfer with REFER, or a bridge when REFER is refused.

A call's session ends ``transferred`` (a flow's ``transfer`` step, the ``transfer_call`` action; the
call is stored ended with ``transfer_target``) and its task calls :class:`Transfers` with the target
(``tel:+1…``, a bare number, or a ``sip:`` URI) while the dialog is still up:

1. The agent's last words are let out (the paced RTP queue drains, at most :data:`DRAIN_S`).
2. **REFER** (RFC 3515) in the dialog: ``Refer-To`` the target, ``Referred-By`` us. A ``202``/``200``
   means the far end tries the target: its NOTIFYs (``message/sipfrag``) report how it went. A final
   2xx there is a done transfer; a failure (the target busy …) or no final NOTIFY within
   :data:`NOTIFY_WAIT_S` is logged. Either way we then BYE our leg unless the far end already did
   (RFC 5589 lets either side end it).
3. **Bridge** when the far end refuses REFER (any final non-2xx, or no answer to it): a second
   outbound leg through the same carrier (the call's signalling peer; an outbound call's digest
   credentials), and, once it answers, RTP relayed both ways between the two legs (decoded and
   re-encoded, so the legs may use different G.711 laws) until either side hangs up, when the other
   gets a BYE. A leg that cannot be placed (busy, no answer …) ends the caller's leg with a BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable
from typing import TypeVar

from callgate.domain.lifecycle import EndReason
from callgate.pipeline.audio import StreamResampler
from callgate.realtime.media.rtp_session import RtpSession
from callgate.realtime.sip.message import Request
from callgate.realtime.sip_trunk import sdp
from callgate.realtime.sip_trunk.call import TrunkCall
from callgate.realtime.sip_trunk.dialog import TrunkDialog, contact_uri, new_branch, new_tag
from callgate.realtime.sip_trunk.server import SipTrunkServer
from callgate.realtime.sip_trunk.transactions import ServerTransaction
from callgate.realtime.sip_trunk.uac import Invite, InviteClient, Stop, answered_dialog
from callgate.realtime.start import CallStarter

__all__ = ["Transfers", "target_uri"]

log = logging.getLogger(__name__)

DRAIN_S = 10.0
NOTIFY_WAIT_S = 60.0
RING_TIMEOUT_S = 30.0
_NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
T = TypeVar("T")


def target_uri(target: str, host: str, port: int) -> str | None:
    """The Request-URI for ``target``: a ``sip:``/``sips:`` URI as given; ``tel:`` or a bare number
    as a user at the carrier (``host:port``); None when it is neither."""
    target = target.strip()
    if target.lower().startswith(("sip:", "sips:")):
        return target
    number = target[4:] if target.lower().startswith("tel:") else target
    number = number.split(";", 1)[0].replace("-", "").replace(" ", "")
    if not _NUMBER.match(number):
        return None
    return f"sip:{number}@{host}:{port}"


class Transfers:
    """The trunk's :data:`~callgate.realtime.sip_trunk.call.Transfer` (see the module docstring)."""

    def __init__(self, *, server: SipTrunkServer, starter: CallStarter, bind_host: str) -> None:
        self._server = server
        self._starter = starter
        self._bind_host = bind_host

    async def __call__(self, call: TrunkCall, target: str) -> None:
        log_extra = {"call": call.call_id}
        host, port = call.channel.peer
        uri = target_uri(target, host, port)
        if uri is None:
            log.warning("transfer target %r is not a number or SIP URI: hanging up", target, extra=log_extra)
            call.hang_up("transfer target not dialable")
            return
        await _drain(call)
        if call.ended.is_set() or not call.dialog.live:
            return
        if await self._refer(call, uri):
            if call.dialog.live:
                call.hang_up("transferred")
            return
        if call.ended.is_set() or not call.dialog.live:
            return
        log.info("REFER refused: bridging the caller to %s", uri, extra=log_extra)
        await self._bridge(call, uri)

    async def _refer(self, call: TrunkCall, uri: str) -> bool:
        """True once the far end took the REFER (its outcome is logged); False if it refused it."""
        log_extra = {"call": call.call_id}
        referred_by = contact_uri(call.dialog.local_uri)
        data, branch = call.dialog.request(
            "REFER", headers=[("Refer-To", f"<{uri}>"), ("Referred-By", f"<{referred_by}>")]
        )
        signalling = call._signalling
        tx = signalling.transact(call.channel, data, branch, "REFER")
        try:
            while True:
                reply = await _until_ended(call, tx.next_response())
                if reply is None:
                    return True  # the far end hung up meanwhile: nothing left to transfer
                if reply.status >= 200:
                    break
        finally:
            signalling.forget(tx)
        if reply.status >= 300:
            log.info("REFER answered %d", reply.status, extra=log_extra)
            return False
        log.info("REFER accepted (%d): the far end calls %s", reply.status, uri, extra=log_extra)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NOTIFY_WAIT_S
        while (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    status = await _until_ended(call, call.refer_progress.get())
            except TimeoutError:
                break
            if status is None:
                log.info("the transferee hung up: transferred", extra=log_extra)
                return True
            if status >= 300:
                log.warning("the transfer to %s failed (%d)", uri, status, extra=log_extra)
                return True
            if status >= 200:
                log.info("transferred to %s", uri, extra=log_extra)
                return True
        log.warning("no final NOTIFY about the transfer to %s", uri, extra=log_extra)
        return True

    async def _bridge(self, call: TrunkCall, uri: str) -> None:
        server, channel, log_extra = self._server, call.channel, {"call": call.call_id}
        down = StreamResampler(16000, 8000, quality="QQ")
        up = StreamResampler(16000, 8000, quality="QQ")
        leg_rtp = RtpSession(
            sdp.OFFERED[0],
            on_audio=lambda pcm: call.rtp.send_audio(down.process(pcm)),
            on_timeout=lambda: leg.end(EndReason.TRANSPORT_LOST),
            name=f"{call.call_id}-transfer",
        )
        client = InviteClient(
            server, credentials=call.credentials, ring_timeout_s=RING_TIMEOUT_S, log_call=call.call_id
        )
        leg = _Leg()
        watch = asyncio.ensure_future(_cancel_when_ended(call, client))
        try:
            try:
                port = await leg_rtp.open(host=self._bind_host, ports=self._starter.settings.rtp_port_range)
            except OSError:
                log.error("no free RTP port pair for the transfer leg", extra=log_extra)
                call.hang_up("transfer failed")
                return
            peer = channel.peer
            media_host = server.media_host(peer)
            invite = Invite(
                uri=uri,
                via=server.via(channel.transport, peer),
                from_=f"<{contact_uri(call.dialog.local_uri)}>;tag={new_tag()}",
                to=f"<{uri}>",
                call_id=f"{secrets.token_hex(12)}@callgate",
                cseq=1,
                branch=new_branch(),
            )
            contact = server.contact(channel.transport, peer)
            body = sdp.offer(host=media_host, port=port, session_id=secrets.randbelow(2**62))
            try:
                answer = await client.invite(channel, invite, body, contact)
            except Stop as stop:
                log.warning("the transfer leg to %s ended %s", uri, stop.reason.value, extra=log_extra)
                call.hang_up("transfer failed")
                return
            leg.dialog = dialog = answered_dialog(invite, answer, local_contact=contact)
            channel.send(dialog.request("ACK", cseq=invite.cseq)[0])
            try:
                remote = sdp.parse_answer(answer.body)
            except sdp.NoCommonCodec:
                channel.send(dialog.bye(reason="no common codec")[0])
                call.hang_up("transfer failed")
                return
            if call.ended.is_set():
                channel.send(dialog.bye(reason="caller hung up")[0])
                return
            leg_rtp.negotiated(remote.codec)
            server.register_dialog(dialog.call_id, leg)
            try:
                leg_rtp.start((remote.host, remote.port))
                call.relay = lambda pcm: leg_rtp.send_audio(up.process(pcm))
                log.info("bridged to %s", uri, extra=log_extra)
                ended = asyncio.ensure_future(call.ended.wait())
                gone = asyncio.ensure_future(leg.ended.wait())
                await asyncio.wait({ended, gone}, return_when=asyncio.FIRST_COMPLETED)
                for task in (ended, gone):
                    task.cancel()
                await asyncio.gather(ended, gone, return_exceptions=True)
            finally:
                call.relay = None
                server.unregister_dialog(dialog.call_id, leg)
            if dialog.live:
                data, branch = dialog.bye(reason="the caller hung up")
                server.send_request(channel, data, branch, "BYE")
            if call.dialog.live:
                call.hang_up("the transfer target hung up")
            log.info("the bridged transfer ended", extra=log_extra)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            client.release()
            await leg_rtp.close()


class _Leg:
    """The bridged leg's side of its dialog (what the listener delivers its requests to)."""

    def __init__(self) -> None:
        self.dialog = TrunkDialog(
            call_id="", local_uri="", remote_uri="", remote_target="", routes=[], local_cseq=0,
            remote_cseq=0, local_contact="", via="",
        )  # fmt: skip
        self.ended = asyncio.Event()

    def on_ack(self, request: Request) -> None:
        return None

    def on_request(self, request: Request, tx: ServerTransaction) -> None:
        if not self.dialog.accept_cseq(request):
            tx.send(500, reason="CSeq Out of Order")
            return
        if request.method == "BYE":
            tx.send(200)
            self.dialog.live = False
            self.ended.set()
        elif request.method in ("OPTIONS", "INFO", "UPDATE", "NOTIFY"):
            tx.send(200)
        elif request.method == "INVITE":
            tx.send(488, headers=[("Warning", '304 callgate "a bridged leg keeps its media"')])
        else:
            tx.send(405)

    def end(self, reason: EndReason) -> None:
        self.ended.set()


async def _drain(call: TrunkCall) -> None:
    """Let the agent's last words leave (the RTP queue is paced in real time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_S
    while call.rtp.queued_ms > 0 and loop.time() < deadline and not call.ended.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # (the pacer has no event for an empty queue)


async def _until_ended(call: TrunkCall, awaitable: Awaitable[T]) -> T | None:
    """``awaitable``'s result, or None if the call ends first."""
    got: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    ended = asyncio.ensure_future(call.ended.wait())
    try:
        await asyncio.wait([got, ended], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
    finally:
        ended.cancel()
        if not got.done():
            got.cancel()
        await asyncio.gather(got, ended, return_exceptions=True)
    if got.done() and not got.cancelled():
        return got.result()
    return None


async def _cancel_when_ended(call: TrunkCall, client: InviteClient) -> None:
    await call.ended.wait()
    client.cancelled.set()
