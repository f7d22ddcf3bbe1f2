"""The SIP listener carriers send calls to: UDP and TCP on one address (``CALLGATE_SIP_LISTEN``).

Per message: parse strictly (:mod:`callgate.realtime.sip.message`; a malformed request gets the 400 it
can be given, never an exception), stamp the top Via with ``received``/``rport`` and send responses
where RFC 3261 §18.2.2 and RFC 3581 say (UDP: the source address, at the source port when ``rport`` was
asked for; TCP: the same connection). Server transactions (§17.2) absorb retransmitted requests by
resending the last response, and over UDP retransmit a final non-2xx answer to an INVITE until the ACK.

An inbound INVITE goes: 100 Trying → the source address must belong to a SIP carrier (403; checked
against a cached allow-list before any database query, so a flood from elsewhere costs nothing) → the
number must be one of that carrier's with an agent (404) → a digest challenge when the carrier has
inbound credentials (401) → admission (503 + Retry-After) → the SDP offer must have PCMU or PCMA (488)
→ 180 Ringing → :data:`StartCall` (:mod:`~callgate.realtime.sip_trunk.inbound`), which answers.

Requests inside a dialog (ACK of a 2xx, BYE, re-INVITE, INFO) go to the call that registered it
(:class:`DialogHandler`; none: 481). Responses go to the client transaction their top Via's branch
names (the BYEs we send, outbound INVITEs); a stray response is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import sipmessage

from callgate.domain.carriers import InboundRoute, InboundVerdict, carriers_allowing
from callgate.domain.lifecycle import EndReason
from callgate.realtime.sip import digest
from callgate.realtime.sip.digest import DigestError, NonceBook, Verdict
from callgate.realtime.sip.message import Request, Response, SipParseError, parse
from callgate.realtime.sip_trunk.dialog import TrunkDialog
from callgate.realtime.sip_trunk.framing import FramingError, StreamFramer
from callgate.realtime.sip_trunk.sdp import NoCommonCodec, Offer, parse_offer
from callgate.realtime.sip_trunk.transactions import (
    Channel,
    ClientTransaction,
    Reply,
    ServerTransaction,
    TrunkResponse,
)

__all__ = ["AllowList", "InboundInvite", "SipTrunkServer", "StartCall", "start_call_seam"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
_VIA_HOST = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*\w+\s+(\[[^\]]+\]|[^\s:;]+)(?::(\d+))?", re.IGNORECASE)
_BRANCH = re.compile(r";\s*branch\s*=\s*([^;,\s]+)", re.IGNORECASE)
RETRY_AFTER_S = 5
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
REALM = "callgate"
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class InboundInvite:
    """An INVITE that passed every check: who calls which number of which team, and their offer;
    ``tx`` answers it (the handler sends the final response), ``channel`` reaches the caller."""

    call_id: str
    number: str
    source: Address
    transport: str
    route: InboundRoute
    offer: Offer
    request: Request = field(repr=False)
    tx: ServerTransaction = field(repr=False)
    channel: Channel = field(repr=False)
    contact: str = ""
    """Our Contact URI for this call."""
    media_host: str = ""
    """The address to put in our SDP."""


StartCall = Callable[[InboundInvite], Awaitable[None]]
"""Start the call and send the INVITE's final response through ``invite.tx`` (480 if it does not)."""

InboundCredentials = Callable[[InboundRoute], Awaitable[tuple[str, str] | None]]
"""The username and password a carrier's INVITEs must answer a digest challenge with, or None."""


async def start_call_seam(invite: InboundInvite) -> None:
    """No call starts (the listener without a call handler): the caller hears 480."""
    log.warning("inbound SIP call for %s not started: no call handler", invite.number)


class DialogHandler(Protocol):
    """A call's side of its dialog, as the listener delivers in-dialog requests to it."""

    dialog: TrunkDialog

    def on_ack(self, request: Request) -> None: ...

    def on_request(self, request: Request, tx: ServerTransaction) -> None: ...

    def end(self, reason: EndReason) -> None: ...


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
    challenged: int = 0


class SipTrunkServer:
    def __init__(
        self,
        *,
        route: Callable[[str, str], Awaitable[InboundRoute]],
        allow_list: AllowList,
        refusal: Callable[[], str | None],
        start_call: StartCall = start_call_seam,
        inbound_credentials: InboundCredentials | None = None,
        public_address: str | None = None,
    ) -> None:
        self._route = route
        self._allow_list = allow_list
        self._refusal = refusal
        self.start_call = start_call
        self._inbound_credentials = inbound_credentials
        self._public = public_address
        self.stats = TrunkStats()
        self._transactions: dict[tuple[str, str], ServerTransaction] = {}
        self._clients: dict[str, ClientTransaction] = {}
        self._dialogs: dict[str, DialogHandler] = {}
        self._idle = asyncio.Event()
        """Set when no dialog is left (what a shutdown waits for)."""
        self._nonces = NonceBook(lambda: asyncio.get_running_loop().time(), capacity=4096)
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

            def error_received(self, exc: Exception) -> None:
                log.debug("SIP UDP socket error: %s", exc)

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

    def spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        await self._read_stream(reader, writer, (str(peer[0]), int(peer[1])))

    async def _read_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: Address
    ) -> None:
        framer = StreamFramer()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        reply = _stream_reply(writer)
        try:
            while data := await reader.read(65536):
                for message in framer.feed(data):
                    self.on_message(message, source, reply, transport="tcp")
        except FramingError as exc:
            self.stats.malformed += 1
            log.info("SIP over TCP from %s:%d closed: %s", *source, exc)
        except ConnectionError:
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    # --- what calls use --------------------------------------------------------------------------

    def media_host(self, peer: Address) -> str:
        """The address this node is reached at by ``peer``: ``CALLGATE_SIP_PUBLIC_ADDRESS``, the
        listening address, or (listening on every interface) the one the system routes ``peer`` by."""
        assert self.address is not None
        if self._public:
            return self._public
        host = self.address[0]
        if not ipaddress.ip_address(host).is_unspecified:
            return host
        family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(peer)
                return str(probe.getsockname()[0])
            except OSError:
                return "127.0.0.1"

    def contact(self, transport: str, peer: Address, user: str = "callgate") -> str:
        """Our Contact URI towards ``peer``."""
        assert self.address is not None
        return f"sip:{user}@{_host(self.media_host(peer))}:{self.address[1]};transport={transport}"

    def via(self, transport: str, peer: Address) -> str:
        assert self.address is not None
        return f"SIP/2.0/{transport.upper()} {_host(self.media_host(peer))}:{self.address[1]}"

    def udp_channel(self, peer: Address) -> Channel:
        assert self.address is not None
        return Channel("udp", peer, (self.media_host(peer), self.address[1]), self._udp_reply(peer))

    async def tcp_channel(self, peer: Address) -> Channel:
        """A new TCP connection to ``peer`` (responses and requests on it reach :meth:`on_message`)."""
        assert self.address is not None
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(*peer)
        self.spawn(self._read_stream(reader, writer, peer))
        return Channel("tcp", peer, (self.media_host(peer), self.address[1]), _stream_reply(writer))

    def transact(
        self, channel: Channel, data: bytes, *, branch: str, method: str, keep: bool = False
    ) -> ClientTransaction:
        """Send a request; its responses come from the returned transaction. It is forgotten once
        answered (or timed out) unless ``keep``: then the caller calls :meth:`forget_client`."""
        tx = ClientTransaction(channel, data, branch=branch, method=method)
        self._clients[branch] = tx
        task = self.spawn(tx.run())
        if not keep:
            task.add_done_callback(lambda _: self.forget_client(tx))
        return tx

    def forget_client(self, tx: ClientTransaction) -> None:
        if self._clients.get(tx.branch) is tx:
            del self._clients[tx.branch]

    def send_request(self, channel: Channel, data: bytes, branch: str, method: str) -> None:
        """Send a request whose answer does not matter (a BYE), retransmitted as its transaction says."""
        self.transact(channel, data, branch=branch, method=method)

    def register_dialog(self, call_id: str, handler: DialogHandler) -> None:
        self._dialogs[call_id] = handler

    def unregister_dialog(self, call_id: str, handler: DialogHandler) -> None:
        if self._dialogs.get(call_id) is handler:
            del self._dialogs[call_id]
        if not self._dialogs:
            self._idle.set()

    @property
    def dialog_count(self) -> int:
        return len(self._dialogs)

    async def end_calls(self, reason: EndReason, *, grace_s: float = 5.0) -> None:
        """End every call in a dialog with ``reason`` and give them ``grace_s`` to hang up."""
        for handler in list(self._dialogs.values()):
            handler.end(reason)
        if self._dialogs:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)

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
            self._on_response(message, data)
            return
        self.stats.requests += 1
        request = _stamp_via(message, source)
        if transport == "udp":
            reply = self._udp_reply(_response_address(request, source))
        method = request.method
        reliable = transport == "tcp"
        if method == "ACK":
            tx = self._transactions.get((request.branch, "INVITE"))
            if tx is not None:
                tx.acked.set()
            elif (dialog := self._dialog_of(request)) is not None:
                dialog.on_ack(request)
            return
        if method == "CANCEL":
            self._cancel(request, reply, reliable=reliable)
            return
        key = (request.branch, method)
        if (existing := self._transactions.get(key)) is not None:
            self.stats.retransmissions += 1
            existing.resend()
            return
        tx = self._transactions[key] = ServerTransaction(self, request, reply, reliable=reliable)
        if request.to_tag is not None:
            handler = self._dialog_of(request)
            if handler is None:
                tx.send(481)
                return
            tx.to_tag = request.to_tag
            try:
                handler.on_request(request, tx)
            except Exception:
                log.exception("an in-dialog %s failed", method)
                tx.send(500)
            return
        if method == "INVITE":
            tx.task = self.spawn(self._invite(tx, source, transport, reply))
        elif method == "OPTIONS":
            tx.send(200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")])
        elif method == "BYE":
            tx.send(481)
        else:
            tx.send(405, headers=[("Allow", ALLOW)])

    def _dialog_of(self, request: Request) -> DialogHandler | None:
        handler = self._dialogs.get(request.call_id)
        if handler is None or not handler.dialog.matches(request):
            return None
        return handler

    def _on_response(self, message: Response, data: bytes) -> None:
        vias = message.headers.getlist("Via")
        found = _BRANCH.search(vias[0].split(",")[0]) if vias else None
        tx = self._clients.get(found.group(1)) if found else None
        if tx is None:
            return  # a stray or late response
        _, _, body = data.partition(b"\r\n\r\n")
        tx.received(TrunkResponse(message, body))

    def _cancel(self, request: Request, reply: Reply, *, reliable: bool) -> None:
        invite = self._transactions.get((request.branch, "INVITE"))
        tx = ServerTransaction(self, request, reply, reliable=reliable)
        if invite is None or invite.final:
            tx.send(481)
            return
        tx.send(200)
        if invite.task is not None:
            invite.task.cancel()
        invite.send(487)

    async def _invite(self, tx: ServerTransaction, source: Address, transport: str, reply: Reply) -> None:
        request = tx.request
        tx.send(100)
        try:
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
            if not await self._authorized(tx, route):
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
            tx.send(180, headers=[("Contact", f"<{self.contact(transport, source)}>")])
            channel = (
                self.udp_channel(source)
                if transport == "udp"
                else Channel("tcp", source, (self.media_host(source), self._port), reply)
            )
            invite = InboundInvite(
                request.call_id, route.number or "", source, transport, route, offer, request,
                tx=tx, channel=channel, contact=self.contact(transport, source),
                media_host=self.media_host(source),
            )  # fmt: skip
            await self.start_call(invite)
            if not tx.final:
                tx.send(480, reason="Temporarily Unavailable")
        except asyncio.CancelledError:
            return  # a CANCEL: answered 487 by _cancel
        except Exception:
            log.exception("inbound INVITE failed")
            tx.send(500)

    async def _authorized(self, tx: ServerTransaction, route: InboundRoute) -> bool:
        """Digest-challenge the INVITE when the carrier has inbound credentials (401 otherwise)."""
        if self._inbound_credentials is None:
            return True
        credentials = await self._inbound_credentials(route)
        if credentials is None:
            return True
        username, password = credentials
        request = tx.request
        answer = request.header("Authorization")
        creds = None
        if answer is not None:
            with contextlib.suppress(DigestError):
                creds = digest.parse_credentials(answer)
        ha1 = {name: h(f"{username}:{REALM}:{password}") for name, h in digest.HASHES.items()}
        if creds is not None and creds.username != username:
            creds = None
        verdict = digest.verify(
            creds, method="INVITE", raw_uri=request.raw_uri, realm=REALM, ha1=ha1, nonces=self._nonces
        )
        if verdict is Verdict.OK:
            return True
        self.stats.challenged += 1
        nonce = self._nonces.issue()
        stale = ", stale=true" if verdict is Verdict.STALE else ""
        # MD5 only: what carriers and PBXs (and baresip) answer; a second, SHA-256 challenge confuses some.
        challenge = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"{stale}'
        tx.send(401, headers=[("WWW-Authenticate", challenge)])
        return False

    @property
    def _port(self) -> int:
        assert self.address is not None
        return self.address[1]


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _stream_reply(writer: asyncio.StreamWriter) -> Reply:
    def reply(data: bytes) -> None:
        if not writer.is_closing():
            writer.write(data)

    return reply


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
