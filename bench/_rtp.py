"""A telephone for the benchmarks: a minimal SIP UAC over UDP that dials a callgate number on the SIP
trunk and talks plain RTP, G.711 μ-law at 8 kHz in 20 ms packets, like a carrier's leg would.

:class:`SipCall` is a :class:`~_calls.Call` (the same microphone, the same arrival timestamps) so
``bench/trunk.py`` measures it exactly as ``bench/latency.py`` measures a WebSocket call. What it says is
the benchmark's 16 kHz speech, resampled to 8 kHz (soxr, HQ, a whole utterance at a time, so no filter
delay is added to the timing) and μ-law encoded; what it hears is decoded and timestamped at RTP
arrival (no playout buffer, as for the other transports). It also keeps every packet's arrival time
and sequence number, for the lateness of the server's paced stream (``bench/trunk.py concurrency``).

Nothing here imports the server: SIP is hand-written, G.711 is the ITU formula in numpy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import struct
import time
from typing import Any

import numpy as np
import soxr

from _calls import Call
from _server import FRAME_BYTES, BenchServer, frames_of, noise_pcm

RATE = 8000
SAMPLES = 160  # 20 ms at 8 kHz
PT_PCMU, PT_EVENT = 0, 101
_count = itertools.count(1)


# ---------------------------------------------------------------------------------------------- G.711


def ulaw_encode(pcm16: np.ndarray) -> bytes:
    """G.711 μ-law (ITU-T, with the bias of 0x84 and the clip at 32635)."""
    x = pcm16.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0x00)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


_DECODE = np.zeros(256, dtype=np.int16)
for _byte in range(256):
    _u = ~_byte & 0xFF
    _t = (((_u & 0x0F) << 3) + 0x84) << ((_u & 0x70) >> 4)
    _DECODE[_byte] = (0x84 - _t) if _u & 0x80 else (_t - 0x84)


def ulaw_decode(payload: bytes) -> np.ndarray:
    return _DECODE[np.frombuffer(payload, dtype=np.uint8)]


def to_phone(frames16: list[bytes]) -> list[bytes]:
    """16 kHz PCM16 frames as μ-law payloads of 20 ms at 8 kHz (one per frame)."""
    pcm = np.frombuffer(b"".join(frames16), dtype="<i2").astype(np.float32)
    narrow = soxr.resample(pcm, 16000, RATE, quality="HQ")
    narrow = np.clip(np.round(narrow), -32768, 32767).astype(np.int16)
    need = len(frames16) * SAMPLES
    narrow = np.concatenate([narrow, np.zeros(max(0, need - len(narrow)), dtype=np.int16)])[:need]
    encoded = ulaw_encode(narrow)
    return [encoded[i * SAMPLES : (i + 1) * SAMPLES] for i in range(len(frames16))]


# ---------------------------------------------------------------------------------------------- SIP


def _header(message: str, name: str) -> str | None:
    for line in message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)


class SipCall(Call):
    """One phone call to ``number`` at the trunk ``sip`` (host, port); see the module docstring."""

    transport = "sip_trunk"

    def __init__(
        self, sip: tuple[str, int], number: str, *, keep_arrivals: bool = False, own_sender: bool = True
    ) -> None:
        """``keep_arrivals``: keep (arrival, sequence) of every packet and decode none (a listener);
        ``own_sender`` False: nothing is sent unless :meth:`send_packet` is called (a shared clock)."""
        super().__init__()
        self.sip = sip
        self.number = number
        self.keep_arrivals = keep_arrivals
        self.own_sender = own_sender
        self.arrivals: list[tuple[float, int]] = []  # (arrival, sequence number) of PCMU packets
        noise = frames_of(noise_pcm(2.0, seed=7))
        self._noise = to_phone(noise)
        self._sip_tx: asyncio.DatagramTransport | None = None
        self._rtp_tx: asyncio.DatagramTransport | None = None
        self._sender: asyncio.Task[None] | None = None
        self._responses: asyncio.Queue[str] = asyncio.Queue()
        self._call_id = f"bench-{secrets.token_hex(8)}@127.0.0.1"
        self._tag = secrets.token_hex(4)
        self._to = ""
        self._target = ""
        self._cseq = 1
        self._remote_rtp: tuple[str, int] | None = None
        self._closed = False
        self.call_id_header = self._call_id
        self.failed: str | None = None
        self._seq, self._ts, self._ssrc = secrets.randbits(16), secrets.randbits(32), secrets.randbits(32)

    # the microphone speaks 8 kHz μ-law
    def speak(self, frames: list[bytes], voiced_until: int, *, voiced_from: int = -1) -> None:
        if frames and len(frames[0]) == FRAME_BYTES:
            frames = to_phone(frames)  # frame for frame: the indexes stay
        super().speak(frames, voiced_until, voiced_from=voiced_from)

    async def open(self, *, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        self._sip_tx, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_sip), local_addr=("127.0.0.1", 0)
        )
        self._rtp_tx, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_rtp), local_addr=("127.0.0.1", 0)
        )
        sip_port = self._sip_tx.get_extra_info("sockname")[1]
        rtp_port = self._rtp_tx.get_extra_info("sockname")[1]
        self._local = f"127.0.0.1:{sip_port}"
        sdp = (
            f"v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP {PT_PCMU} {PT_EVENT}\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:{PT_EVENT} telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        )
        uri = f"sip:{self.number}@{self.sip[0]}:{self.sip[1]}"
        self._to = f"<{uri}>"
        branch = self._request("INVITE", uri, cseq=1, body=sdp)
        async with asyncio.timeout(timeout):
            while True:
                response = await self._responses.get()
                status = int(response.split(" ", 2)[1])
                if status < 200:
                    continue
                if status >= 300:
                    self.failed = response.split("\r\n", 1)[0]
                    self._ack(uri, branch, response)
                    raise ConnectionError(f"the trunk answered {self.failed}")
                break
        self._to = _header(response, "To") or self._to
        found = re.search(r"<([^>]+)>", _header(response, "Contact") or "")
        self._target = found.group(1) if found else uri
        self._request("ACK", self._target, cseq=1)
        body = response.split("\r\n\r\n", 1)[1]
        host = re.search(r"^c=IN IP4 (\S+)", body, re.M)
        port = re.search(r"^m=audio (\d+)", body, re.M)
        assert host and port, body
        self._remote_rtp = (host.group(1), int(port.group(1)))
        if self.own_sender:
            self._sender = asyncio.create_task(self._send_forever())

    def _request(self, method: str, uri: str, *, cseq: int, body: str = "") -> str:
        branch = f"z9hG4bK{secrets.token_hex(6)}{next(_count)}"
        content = "Content-Type: application/sdp\r\n" if body else ""
        data = (
            f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {self._local};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag={self._tag}\r\nTo: {self._to}\r\n"
            f"Call-ID: {self._call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:bench@{self._local}>\r\n"
            f"{content}Content-Length: {len(body.encode())}\r\n\r\n{body}"
        )
        assert self._sip_tx is not None
        self._sip_tx.sendto(data.encode(), self.sip)
        return branch

    def _ack(self, uri: str, branch: str, response: str) -> None:
        """The ACK of a failure: the INVITE's branch, the response's To."""
        to = _header(response, "To") or self._to
        data = (
            f"ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {self._local};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag={self._tag}\r\nTo: {to}\r\n"
            f"Call-ID: {self._call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        )
        assert self._sip_tx is not None
        self._sip_tx.sendto(data.encode(), self.sip)

    def _on_sip(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode(errors="replace")
        if text.startswith("SIP/2.0 "):
            if (_header(text, "CSeq") or "").endswith("INVITE"):
                self._responses.put_nowait(text)
            return
        method = text.split(" ", 1)[0]
        if method in ("ACK",):
            return
        lines = [f"{n}: {_header(text, n) or ''}" for n in ("Via", "From", "To", "Call-ID", "CSeq")]
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"
        assert self._sip_tx is not None
        self._sip_tx.sendto(reply.encode(), addr)
        if method == "BYE":
            self._closed = True
            self.changed.set()

    def _on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        t = time.monotonic()
        b0, b1, seq = data[0], data[1], struct.unpack_from("!H", data, 2)[0]
        if b1 & 0x7F != PT_PCMU:
            return
        payload = data[12 + 4 * (b0 & 0x0F) :]
        if self.keep_arrivals:
            self.arrivals.append((t, seq))
        elif payload:
            pcm = ulaw_decode(payload)
            self._heard(t, int(np.abs(pcm.astype(np.int32)).max()))

    async def _send_forever(self) -> None:
        start, n = time.monotonic(), 0
        while not self._closed:
            due = start + n * 0.02
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.send_packet(self.next_frame(due))
            n += 1

    def send_packet(self, payload: bytes) -> None:
        """One 20 ms RTP packet of μ-law ``payload``."""
        if self._rtp_tx is None or self._remote_rtp is None or self._closed:
            return
        header = struct.pack("!BBHII", 0x80, PT_PCMU, self._seq, self._ts, self._ssrc)
        self._rtp_tx.sendto(header + payload, self._remote_rtp)
        self._seq, self._ts = (self._seq + 1) & 0xFFFF, (self._ts + SAMPLES) & 0xFFFFFFFF

    def noise_frame(self, n: int) -> bytes:
        return self._noise[n % len(self._noise)]

    def next_frame(self, due: float) -> bytes:
        if not self.pending:
            frame = self._noise[self._n % len(self._noise)]
            self._n += 1
            self.send_lateness.append(time.monotonic() - due)
            return frame
        return super().next_frame(due)

    def send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        return None  # a phone has no data channel

    @property
    def closed(self) -> bool:
        return self._closed

    def ended(self) -> bool:
        return self._closed

    async def wait_quiet(self, since: float, *, silence_s: float = 1.0, timeout: float = 60.0) -> bool:
        """Wait until audible audio came after ``since`` and then none for ``silence_s``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._closed:
            heard = [t for t in self.audio if t >= since]
            if heard and time.monotonic() - heard[-1] >= silence_s:
                return True
            await asyncio.sleep(0.05)
        return False

    async def close(self) -> None:
        if not self._closed and self._remote_rtp is not None:
            self._cseq += 1
            self._request("BYE", self._target, cseq=self._cseq)
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await asyncio.sleep(0.1)  # the BYE's 200
        for transport in (self._sip_tx, self._rtp_tx):
            if transport is not None:
                transport.close()


# ---------------------------------------------------------------------------------------------- the trunk


def route_number(server: BenchServer, number: str, agent_id: str) -> None:
    """Calls to ``number`` from this machine (a SIP carrier allowing 127.0.0.1) go to ``agent_id``."""
    r = server.api().post(
        "/v1/carriers",
        json={"kind": "sip", "name": "bench", "inbound": {"allowed_addresses": ["127.0.0.1/32"]}},
    )
    r.raise_for_status()
    r = server.api().post(
        "/v1/phone-numbers", json={"number": number, "agent_id": agent_id, "carrier_id": r.json()["id"]}
    )
    r.raise_for_status()


async def sip_call_id(server: BenchServer, known: set[str], timeout: float = 30.0) -> str:
    """The id of the phone call that just started (the first SIP trunk call id not in ``known``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = server.api().get("/v1/calls", params={"limit": 20})
        for call in r.json()["data"]:
            if call.get("transport") == "sip_trunk" and call["id"] not in known:
                known.add(call["id"])
                return str(call["id"])
        await asyncio.sleep(0.1)
    raise RuntimeError("the phone call was not stored")
