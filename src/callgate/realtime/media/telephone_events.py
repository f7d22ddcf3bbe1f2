"""RFC 4733 telephone-events (DTMF digits carried in RTP) received from a peer, and built to send.

A key press is one *event*: several RTP packets that share the event's start timestamp and carry a
growing duration, then (usually three copies of) an end packet. :class:`DtmfReceiver` reports each event
once, when its first end packet arrives, or when a new event starts before an end packet was seen.
:class:`TelephoneEvents` picks a stream's telephone-event packets out by their negotiated payload types
(browsers offer ``telephone-event/48000`` beside Opus, SIP phones ``/8000`` beside G.711) and feeds
one receiver per payload type. What happens to the digits is the transport's business
(:mod:`callgate.realtime.digits` turns them into a typed caller turn).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from callgate.realtime.media.offer import TELEPHONE_EVENT

log = logging.getLogger(__name__)

DIGITS = "0123456789*#ABCD"
"""Event codes 0-15 (RFC 4733 section 3.2); 16 is a hook flash, reported as ``"!"``."""
FLASH = 16


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    digit: str
    """``0``-``9``, ``*``, ``#``, ``A``-``D``, or ``!`` for a hook flash."""
    duration_ms: int
    volume_dbm0: int
    """Power level as -dBm0 (0 is loudest, 63 quietest)."""


def parse_event(payload: bytes) -> tuple[int, bool, int, int]:
    """``(event, end, volume, duration)`` of one telephone-event payload; ValueError if malformed."""
    if len(payload) < 4:
        raise ValueError("a telephone-event payload has 4 bytes")
    event, flags, duration = struct.unpack("!BBH", payload[:4])
    return event, bool(flags & 0x80), flags & 0x3F, duration


def event_payloads(
    digit: str, *, duration_ms: int = 160, volume_dbm0: int = 10, clock_rate: int = 8000, packet_ms: int = 20
) -> list[bytes]:
    """The payloads that send one key press (RFC 4733 section 2.5): one per packet interval, each with
    the duration so far, then the end packet three times. All share the event's start timestamp."""
    code = FLASH if digit == "!" else DIGITS.find(digit.upper())
    if code < 0 or len(digit) != 1:
        raise ValueError(f"{digit!r} is not a DTMF digit")
    step = clock_rate * packet_ms // 1000
    total = max(step, clock_rate * duration_ms // 1000)
    flags = volume_dbm0 & 0x3F
    payloads = [struct.pack("!BBH", code, flags, d) for d in range(step, total, step)]
    return payloads + [struct.pack("!BBH", code, flags | 0x80, min(total, 0xFFFF))] * 3


class DtmfReceiver:
    """Feed it every telephone-event packet; it calls ``on_event`` once per key press."""

    def __init__(self, on_event: Callable[[DtmfEvent], None], *, clock_rate: int) -> None:
        self._on_event = on_event
        self._clock_rate = clock_rate
        self._timestamp: int | None = None
        self._last: tuple[int, int, int] | None = None  # event, volume, duration of the open event
        self._reported = True

    def feed(self, payload: bytes, timestamp: int) -> None:
        try:
            event, end, volume, duration = parse_event(payload)
        except ValueError:
            return
        if event > FLASH:
            return  # not a DTMF event (e.g. a fax tone): ignored
        if timestamp != self._timestamp:
            self._report()  # the previous event's end packets were lost
            self._timestamp, self._reported = timestamp, False
        if self._reported:
            return  # a retransmitted end packet
        self._last = (event, volume, duration)
        if end:
            self._report()

    def _report(self) -> None:
        if self._reported or self._last is None:
            return
        self._reported = True
        event, volume, duration = self._last
        digit = "!" if event == FLASH else DIGITS[event]
        self._on_event(DtmfEvent(digit, round(duration * 1000 / self._clock_rate), volume))


class TelephoneEvents:
    """The telephone-event side of one audio stream: :meth:`feed` every RTP packet; it reports key
    presses to ``on_event`` and says which packets were telephone-events (the audio path skips them)."""

    def __init__(
        self,
        codecs: Iterable[RTCRtpCodecParameters],
        on_event: Callable[[DtmfEvent], None],
        *,
        name: str = "",
    ) -> None:
        self._on_event = on_event
        self._name = name
        self._receivers = {
            c.payloadType: DtmfReceiver(self._report, clock_rate=c.clockRate)
            for c in codecs
            if c.payloadType is not None and c.name.lower() == TELEPHONE_EVENT
        }

    def feed(self, packet: RtpPacket) -> bool:
        """True if ``packet`` was a telephone-event (reported here), False if it is the audio's."""
        receiver = self._receivers.get(packet.payload_type)
        if receiver is None:
            return False
        receiver.feed(packet.payload, packet.timestamp)
        return True

    def _report(self, event: DtmfEvent) -> None:
        log.info("dtmf %s (%d ms)", event.digit, event.duration_ms, extra={"call": self._name})
        self._on_event(event)
