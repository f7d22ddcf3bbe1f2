"""Key presses sent the way a browser sends them: RFC 4733 telephone-event packets in an aiortc caller's
audio stream (aiortc itself has no DTMF sender).

:class:`DtmfSender` sits between the caller's audio RTP sender and its DTLS transport. While a key is
being sent, each 20 ms audio packet is replaced by a telephone-event packet that takes its sequence
number (one stream, one SSRC, one sequence, as Chromium's ``RTCDTMFSender`` does): the event's packets
share the RTP timestamp of its first slot, carry a growing duration, and end with three copies of the
end packet. Between keys, audio flows for ``gap_ms``.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket, is_rtcp
from aiortc.sdp import SessionDescription

EVENTS = "0123456789*#ABCD"
SLOT_MS = 20
END_COPIES = 3


def telephone_event(sdp: str) -> tuple[int, int] | None:
    """``(payload type, clock rate)`` of the telephone-event matching the audio codec's clock in an SDP
    (else the first one), or None if the SDP has none."""
    audio = next(m for m in SessionDescription.parse(sdp).media if m.kind == "audio")
    events = [c for c in audio.rtp.codecs if c.name.lower() == "telephone-event"]
    if not events:
        return None
    main = next(c for c in audio.rtp.codecs if c.name.lower() != "telephone-event")
    chosen = next((c for c in events if c.clockRate == main.clockRate), events[0])
    assert chosen.payloadType is not None
    return chosen.payloadType, chosen.clockRate


class DtmfSender:
    """``await DtmfSender(pc, answer_sdp).press("12#")`` sends three key presses on ``pc``'s audio."""

    def __init__(
        self, pc: RTCPeerConnection, answer_sdp: str, *, duration_ms: int = 100, gap_ms: int = 60
    ) -> None:
        negotiated = telephone_event(answer_sdp)
        assert negotiated is not None, "the answer has no telephone-event"
        self.payload_type, self.clock_rate = negotiated
        self.duration_ms = duration_ms
        self.gap_ms = gap_ms
        self.packets_sent = 0
        sender = next(t.sender for t in pc.getTransceivers() if t.kind == "audio")
        self._ssrc = sender._ssrc
        dtls = sender.transport
        self._send: Callable[[bytes], Awaitable[None]] = dtls._send_rtp
        dtls._send_rtp = self._send_rtp  # type: ignore[method-assign]
        # One item per audio slot: a telephone-event payload (first of its event?) or None (audio).
        self._slots: deque[tuple[bytes, bool] | None] = deque()
        self._event_timestamp = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def press(self, keys: str) -> None:
        """Queue the keys and wait until their last packet has left."""
        unit = self.clock_rate * SLOT_MS // 1000
        slots = self.duration_ms // SLOT_MS
        for key in keys:
            event = EVENTS.index(key.upper())
            for n in range(1, slots):
                self._slots.append((self._payload(event, n * unit, end=False), n == 1))
            for _ in range(END_COPIES):
                self._slots.append((self._payload(event, slots * unit, end=True), False))
            self._slots.extend([None] * (self.gap_ms // SLOT_MS))
        self._idle.clear()
        async with asyncio.timeout(10):
            await self._idle.wait()

    @staticmethod
    def _payload(event: int, duration: int, *, end: bool) -> bytes:
        volume = 10  # -10 dBm0
        return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)

    async def _send_rtp(self, data: bytes) -> None:
        if is_rtcp(data) or int.from_bytes(data[8:12], "big") != self._ssrc or not self._slots:
            await self._send(data)
            return
        slot = self._slots.popleft()
        try:
            await self._send(data if slot is None else self._event_packet(data, *slot))
        finally:
            if not self._slots:
                self._idle.set()

    def _event_packet(self, audio: bytes, payload: bytes, first: bool) -> bytes:
        sequence, timestamp = struct.unpack("!HI", audio[2:8])
        if first:
            self._event_timestamp = timestamp
        packet = RtpPacket(
            payload_type=self.payload_type,
            marker=int(first),
            sequence_number=sequence,
            timestamp=self._event_timestamp,
            ssrc=self._ssrc,
            payload=payload,
        )
        self.packets_sent += 1
        return packet.serialize()
