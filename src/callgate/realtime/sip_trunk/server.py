"""The SIP listener carriers send calls to: UDP and TCP on one address (``CALLGATE_SIP_LISTEN``).

Per message: parse strictly (:mod:`callgate.realtime.sip.message`; a malformed request gets the 400 it
can be given, never an exception), stamp the top Via with ``received``/``rport`` and send responses
where RFC 3261 §18.2.2 and RFC 3581 say (UDP: the source address, at the source port when ``rport`` was
asked for; TCP: the same connection). Server transactions (§17.2) absorb retransmitted requests by
resending the last response, and over UDP retransmit a final non-2xx answer to an INVITE until the ACK.

An inbound INVITE goes: 100 Trying → the source address must belong to a SIP carrier (403; checked
against a cached allow-list before any database query, so a flood from elsewhere costs nothing) → the
number must be one of that carrier's with an agent (404) → admission (503 + Retry-After) → the SDP
offer must have PCMU or PCMA (488) → 180 Ringing → :data:`StartCall`, the seam where the call starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import sipmessage

from callgate.domain.carriers import InboundRoute, InboundVerdict, carriers_allowing
from callgate.realtime.sip.dialog import new_tag
from callgate.realtime.sip.message import Request, Response, SipParseError, parse, response
from callgate.realtime.sip_trunk.framing import FramingError, StreamFramer
from callgate.realtime.sip_trunk.sdp import NoCommonCodec, Offer, parse_offer

__all__ = ["AllowList", "InboundInvite", "SipTrunkServer", "StartCall", "start_call_seam"]

log = logging.getLogger(__name__)

T1 = 0.5
Address = tuple[str, int]
Reply = Callable[[bytes], None]
_VIA_HOST = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*\w+\s+(\[[^\]]+\]|[^\s:;]+)(?::(\d+))?", re.IGNORECASE)
RETRY_AFTER_S = 5
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"


@dataclass(frozen=True, slots=True)
class InboundInvite:
    """An INVITE that passed every check: who calls which number of which team, and their offer."""

    call_id: str
    number: str
    source: Address
    transport: str
    route: InboundRoute
    offer: Offer
    request: Request = field(repr=False)


StartCall = Callable[[InboundInvite], Awaitable[bytes | None]]
"""Start the call; returns the 200 OK's SDP answer, or None when the call could not start."""


async def start_call_seam(invite: InboundInvite) -> bytes | None:
    """SEAM (issue 12): where an inbound trunk call starts, once ``callgate.realtime.start.CallStarter``
    lands: ``starter.join(team_id=..., call_id=...)`` for a phone call created for ``invite.route``,
    an :class:`~callgate.realtime.media.rtp_session.RtpSession` opened on ``CALLGATE_RTP_PORTS`` and
    started towards ``invite.offer``, ``starter.start(plan, transport=<RTP transport>,
    output_sample_rate=8000)``, and the SDP answer (``sdp.answer``) returned for the 200 OK.
    Until then no call starts here, and the caller hears 480 Temporarily Unavailable."""
    log.warning("inbound SIP call for %s not started: the call start is not wired yet", invite.number)
    return None


class AllowList:
    """The SIP carriers' inbound networks, re-read at most every ``ttl_s`` seconds."""

    def __init__(self, load: Callable[[], Awaitable[list[tuple[str, str]]]], *, ttl_s: float = 5.0) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._networks: list[tuple[str, str]] = []
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def allows(self, source_ip: str) -> bool:
        now = asyncio.get_running_loop().time()
        if self._loaded_at is None or now - self._loaded_at > self._ttl_s:
            async with self._lock:
                if self._loaded_at is None or now - self._loaded_at > self._ttl_s:
                    self._networks = await self._load()
                    self._loaded_at = asyncio.get_running_loop().time()
        return bool(carriers_allowing(source_ip, self._networks))


@dataclass(slots=True)
class TrunkStats:
    requests: int = 0
    malformed: int = 0
    retransmissions: int = 0
    forbidden: int = 0


class ServerTransaction:
    def __init__(self, server: SipTrunkServer, request: Request, reply: Reply, *, reliable: bool) -> None:
        self.server = server
        self.request = request
        self.reply = reply
        self.reliable = reliable
        self.to_tag = new_tag()
        self.last: bytes | None = None
        self.final = False
        self.acked = asyncio.Event()

    def send(
        self,
        status: int,
        *,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        if self.final:
            return
        data = response(self.request, status, reason=reason, to_tag=self.to_tag, headers=headers, body=body)
        self.last = data
        self.reply(data)
        if status >= 200:
            self.final = True
            invite = self.request.method == "INVITE"
            if invite and status >= 300 and not self.reliable:
                self.server.spawn(self._retransmit_until_ack(data))
            self.server.spawn(self._expire(64 * T1 if invite or not self.reliable else 0.0))

    def resend(self) -> None:
        if self.last is not None:
            self.reply(self.last)

    async def _retransmit_until_ack(self, data: bytes) -> None:
        """Timer G until the ACK, giving up at timer H (64*T1)."""
        interval, waited = T1, 0.0
        while waited < 64 * T1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.acked.wait(), interval)
                return
            waited += interval
            self.reply(data)
            interval = min(interval * 2, 4.0)

    async def _expire(self, after: float) -> None:
        await asyncio.sleep(after)
        self.server.forget(self)


class SipTrunkServer:
    def __init__(
        self,
        *,
        route: Callable[[str, str], Awaitable[InboundRoute]],
        allow_list: AllowList,
        refusal: Callable[[], str | None],
        start_call: StartCall = start_call_seam,
        public_address: str | None = None,
    ) -> None:
        self._route = route
        self._allow_list = allow_list
        self._refusal = refusal
        self._start_call = start_call
        self._public = public_address
        self.stats = TrunkStats()
        self._transactions: dict[tuple[str, str], ServerTransaction] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self.address: Address | None = None

    # --- sockets ---------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> Address:
        """Listen on UDP and TCP at ``host:port`` (port 0: any free one, the same for both)."""
        loop = asyncio.get_running_loop()
        server = self

        class Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
                source = (str(addr[0]), int(addr[1]))
                server.on_message(data, source, server._udp_reply(source), transport="udp")

        for _attempt in range(1 if port else 20):  # port 0: find one free for both UDP and TCP
            self._udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(host, port))
            bound = self._udp.get_extra_info("sockname")
            try:
                self._tcp = await asyncio.start_server(self._on_tcp, host, bound[1])
                break
            except OSError:
                self._udp.close()
                if port:
                    raise
        else:
            raise OSError(f"no port on {host} is free for both UDP and TCP")
        self.address = (str(bound[0]), int(bound[1]))
        log.info("SIP trunk listening on %s:%d (UDP and TCP)", *self.address)
        return self.address

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tcp is not None:
            await self._tcp.wait_closed()

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, tx: ServerTransaction) -> None:
        key = (tx.request.branch, tx.request.method)
        if self._transactions.get(key) is tx:
            del self._transactions[key]

    def _udp_reply(self, source: Address) -> Reply:
        def reply(data: bytes) -> None:
            if self._udp is not None:
                self._udp.sendto(data, source)

        return reply

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = (str(peer[0]), int(peer[1]))
        framer = StreamFramer()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while data := await reader.read(65536):
                for message in framer.feed(data):
                    self.on_message(message, source, writer.write, transport="tcp")
        except FramingError as exc:
            self.stats.malformed += 1
            log.info("SIP over TCP from %s:%d closed: %s", *source, exc)
        except ConnectionError:
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    # --- messages --------------------------------------------------------------------------------

    def on_message(self, data: bytes, source: Address, reply: Reply, *, transport: str) -> None:
        try:
            message = parse(data)
        except SipParseError as exc:
            self.stats.malformed += 1
            if exc.reply is not None:
                reply(exc.reply)
            return
        if isinstance(message, Response):
            return  # no client transactions yet (outbound calls come later)
        self.stats.requests += 1
        request = _stamp_via(message, source)
        if transport == "udp":
            reply = self._udp_reply(_response_address(request, source))
        method = request.method
        if method == "ACK":
            tx = self._transactions.get((request.branch, "INVITE"))
            if tx is not None:
                tx.acked.set()
            return
        if method == "CANCEL":
            self._cancel(request, reply, reliable=transport == "tcp")
            return
        key = (request.branch, method)
        if (existing := self._transactions.get(key)) is not None:
            self.stats.retransmissions += 1
            existing.resend()
            return
        tx = self._transactions[key] = ServerTransaction(self, request, reply, reliable=transport == "tcp")
        if method == "INVITE":
            self.spawn(self._invite(tx, source, transport))
        elif method == "OPTIONS":
            tx.send(200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")])
        elif method == "BYE":
            tx.send(481)
        else:
            tx.send(405, headers=[("Allow", ALLOW)])

    def _cancel(self, request: Request, reply: Reply, *, reliable: bool) -> None:
        invite = self._transactions.get((request.branch, "INVITE"))
        tx = ServerTransaction(self, request, reply, reliable=reliable)
        if invite is None or invite.final:
            tx.send(481)
            return
        tx.send(200)
        invite.send(487)

    async def _invite(self, tx: ServerTransaction, source: Address, transport: str) -> None:
        request = tx.request
        tx.send(100)
        try:
            if request.to_tag is not None:
                tx.send(481)  # a re-INVITE for a dialog this node does not have
                return
            if not await self._allow_list.allows(source[0]):
                self.stats.forbidden += 1
                tx.send(403)
                return
            route = await self._route(request.uri.user or "", source[0])
            if route.verdict is InboundVerdict.FORBIDDEN:
                self.stats.forbidden += 1
                tx.send(403)
                return
            if route.verdict is InboundVerdict.UNKNOWN_NUMBER:
                tx.send(404)
                return
            if (refusal := self._refusal()) is not None:
                tx.send(503, reason="Service Unavailable", headers=[("Retry-After", str(RETRY_AFTER_S))])
                log.info("inbound SIP call refused: %s", refusal)
                return
            try:
                offer = parse_offer(request.body) if request.content_type == "application/sdp" else None
            except NoCommonCodec as exc:
                tx.send(488, headers=[("Warning", f'304 callgate "{exc}"')])
                return
            if offer is None:
                tx.send(488, headers=[("Warning", '304 callgate "an SDP offer is required"')])
                return
            tx.send(180, headers=[("Contact", self._contact(transport))])
            invite = InboundInvite(
                request.call_id, route.number or "", source, transport, route, offer, request
            )
            sdp = await self._start_call(invite)
            if sdp is None:
                tx.send(480, reason="Temporarily Unavailable")
                return
            tx.send(
                200,
                headers=[("Contact", self._contact(transport)), ("Content-Type", "application/sdp")],
                body=sdp,
            )
        except Exception:
            log.exception("inbound INVITE failed")
            tx.send(500)

    def _contact(self, transport: str) -> str:
        assert self.address is not None
        host = self._public or self.address[0]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"<sip:callgate@{host}:{self.address[1]};transport={transport}>"


def _stamp_via(request: Request, source: Address) -> Request:
    """``request`` with ``received`` and ``rport`` filled in on its top Via (RFC 3261 §18.2.1, RFC 3581)."""
    vias = request.headers.getlist("Via")
    first, _, rest = vias[0].partition(",")
    stamped = re.sub(r";\s*rport(?=\s*(;|$))", f";rport={source[1]}", first, count=1, flags=re.IGNORECASE)
    if ";received=" not in stamped.lower():
        stamped += f";received={source[0]}"
    headers = sipmessage.Headers()
    for name in request.headers.keys():  # noqa: SIM118 - Headers is not iterable
        values = request.headers.getlist(name)
        if name.lower() in ("via", "v"):
            continue
        headers.setlist(name, values)
    headers.setlist("Via", [stamped + ("," + rest if rest else ""), *vias[1:]])
    return dataclasses.replace(request, headers=headers)


def _response_address(request: Request, source: Address) -> Address:
    """Where a UDP response goes (RFC 3261 §18.2.2 with RFC 3581): the source IP, at the source port
    when the client asked for ``rport``, else at its Via's sent-by port (5060 by default)."""
    top = request.headers.getlist("Via")[0].split(",")[0]
    if re.search(r";\s*rport=", top, re.IGNORECASE):
        return source
    match = _VIA_HOST.match(top)
    port = int(match.group(2)) if match and match.group(2) else 5060
    return source[0], port if 0 < port < 65536 else 5060
