"""A scripted SIP peer over real UDP sockets, for what no real user agent can be made to do on cue: a
carrier that holds and resumes a call, goes silent, never ACKs, or answers an INVITE as it is cancelled.

:class:`ScriptedPeer` keeps every message it receives (:meth:`next`), sends hand-written requests and
responses, and has an RTP socket that can stream PCMU silence at 20 ms (:meth:`start_rtp`) and keeps
the key presses that reach it as RFC 4733 telephone-events (:meth:`keys_heard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import struct
from types import TracebackType
from typing import Self

__all__ = ["ScriptedPeer", "sdp_offer"]

_count = itertools.count(1)


def sdp_offer(port: int, direction: str = "sendrecv", host: str = "127.0.0.1", version: int = 1) -> str:
    return (
        f"v=0\r\no=peer 1 {version} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a=ptime:20\r\na={direction}\r\n"
    )


def header(message: bytes, name: str) -> str | None:
    head = message.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def body(message: bytes) -> str:
    return message.split(b"\r\n\r\n", 1)[1].decode(errors="replace")


def status(message: bytes) -> int | None:
    return int(message.split(b" ", 2)[1]) if message.startswith(b"SIP/2.0 ") else None


def method(message: bytes) -> str | None:
    return None if message.startswith(b"SIP/2.0 ") else message.split(b" ", 1)[0].decode()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[bytes] | None) -> None:
        self.queue = queue
        self.count = 0
        self.events: list[tuple[int, int, bytes]] = []
        """RTP packets that are not PCMU (payload type, timestamp, payload): telephone-events."""

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count += 1
        if self.queue is not None:
            self.queue.put_nowait(data)
        elif len(data) >= 12 and data[0] >> 6 == 2 and data[1] & 0x7F != 0:
            count = data[0] & 0x0F  # CSRCs before the payload
            timestamp = struct.unpack("!I", data[4:8])[0]
            self.events.append((data[1] & 0x7F, timestamp, data[12 + 4 * count :]))


class ScriptedPeer:
    """Use as an async context manager; ``sip_port`` and ``rtp_port`` are its loopback ports."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.log: list[bytes] = []
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtp_proto: _Udp | None = None
        self._rtp_task: asyncio.Task[None] | None = None
        self.sip_port = self.rtp_port = 0
        self.call_id = f"peer-{next(_count)}@127.0.0.1"
        self.cseq = 1
        self.remote_tag: str | None = None
        self.remote_target: str | None = None

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._sip, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self.received), local_addr=("127.0.0.1", 0)
        )
        self._rtp, proto = await loop.create_datagram_endpoint(
            lambda: _Udp(None), local_addr=("127.0.0.1", 0)
        )
        self._rtp_proto = proto
        self.sip_port = self._sip.get_extra_info("sockname")[1]
        self.rtp_port = self._rtp.get_extra_info("sockname")[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_rtp()
        for transport in (self._sip, self._rtp):
            if transport is not None:
                transport.close()

    @property
    def rtp_received(self) -> int:
        """RTP packets that reached the peer's RTP port."""
        return self._rtp_proto.count if self._rtp_proto is not None else 0

    def keys_heard(self, payload_type: int = 101) -> str:
        """The key presses received as RFC 4733 events (one per event start timestamp, once its end
        packet came), in order."""
        keys, ended = "", set()
        for pt, timestamp, payload in self._rtp_proto.events if self._rtp_proto else []:
            if pt == payload_type and len(payload) >= 4 and payload[1] & 0x80 and timestamp not in ended:
                ended.add(timestamp)
                keys += "0123456789*#ABCD"[payload[0]] if payload[0] < 16 else "!"
        return keys

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self._sip is not None
        self._sip.sendto(data, to)

    async def next(self, *, timeout: float = 30.0, skip_provisional: bool = True) -> bytes:
        """The next message (responses below 200 skipped unless told)."""
        async with asyncio.timeout(timeout):
            while True:
                data = await self.received.get()
                self.log.append(data)
                code = status(data)
                if skip_provisional and code is not None and code < 200:
                    continue
                return data

    def request(
        self,
        verb: str,
        uri: str,
        to: tuple[str, int],
        *,
        to_header: str,
        cseq: int | None = None,
        extra: str = "",
        sdp: str = "",
        branch: str | None = None,
        from_tag: str = "peertag",
        call_id: str | None = None,
        content_type: str = "application/sdp",
    ) -> str:
        """Send a request from ``sip:peer@127.0.0.1`` (``sdp``: its body, of ``content_type``); returns
        its branch."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        branch = branch or f"z9hG4bKpeer{next(_count)}"
        content = f"Content-Type: {content_type}\r\n" if sdp else ""
        data = (
            f"{verb} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:peer@127.0.0.1>;tag={from_tag}\r\nTo: {to_header}\r\n"
            f"Call-ID: {call_id or self.call_id}\r\nCSeq: {cseq} {verb}\r\n"
            f"Contact: <sip:peer@127.0.0.1:{self.sip_port}>\r\n{extra}{content}"
            f"Content-Length: {len(sdp.encode())}\r\n\r\n{sdp}"
        ).encode()
        self.send(data, to)
        return branch

    def respond(self, request: bytes, code: int, reason: str, to: tuple[str, int], *, tag: str | None = None,
                sdp: str = "") -> None:  # fmt: skip
        """Answer ``request`` (its Via, From, To (+ ``tag``), Call-ID, CSeq echoed)."""
        lines = []
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            value = header(request, name) or ""
            if name == "To" and tag and ";tag=" not in value:
                value += f";tag={tag}"
            lines.append(f"{name}: {value}")
        content = "Content-Type: application/sdp\r\n" if sdp else ""
        data = (
            f"SIP/2.0 {code} {reason}\r\n" + "\r\n".join(lines) + "\r\n"
            f"Contact: <sip:peer@127.0.0.1:{self.sip_port}>\r\n{content}"
            f"Content-Length: {len(sdp.encode())}\r\n\r\n{sdp}"
        ).encode()
        self.send(data, to)

    def start_rtp(self, to: tuple[str, int]) -> None:
        """Stream PCMU (near-silence) packets to ``to`` every 20 ms until :meth:`stop_rtp`."""
        if self._rtp_task is None:
            self._rtp_task = asyncio.create_task(self._stream(to))

    async def stop_rtp(self) -> None:
        if self._rtp_task is not None:
            self._rtp_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rtp_task
            self._rtp_task = None

    async def _stream(self, to: tuple[str, int]) -> None:
        seq, ts, ssrc = 1, 0, 0x1234ABCD
        while True:
            packet = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + b"\xff" * 160
            if self._rtp is not None:
                self._rtp.sendto(packet, to)
            seq, ts = seq + 1, ts + 160
            await asyncio.sleep(0.02)


def sdp_media(text: str) -> tuple[str, int, str]:
    """The connection address, audio port and direction of an SDP body."""
    host = re.search(r"^c=IN IP4 (\S+)", text, re.MULTILINE)
    port = re.search(r"^m=audio (\d+)", text, re.MULTILINE)
    direction = re.search(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", text, re.MULTILINE)
    assert host and port, text
    return host.group(1), int(port.group(1)), direction.group(1) if direction else "sendrecv"
