"""SIP over a byte stream (TCP): split messages by their Content-Length (RFC 3261 §18.3)."""

from __future__ import annotations

import re

from callgate.realtime.sip.message import MAX_MESSAGE_BYTES

_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d{1,9})[ \t]*$", re.IGNORECASE | re.MULTILINE)
MAX_HEAD_BYTES = 16_384


class FramingError(ValueError):
    """The stream cannot be framed any more (no or a huge Content-Length, a head too long): close it."""


class StreamFramer:
    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Whole messages now complete, in order. Keep-alive CRLFs between messages are skipped."""
        self._buffer.extend(data)
        out: list[bytes] = []
        while True:
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise FramingError("a message head is too long")
                return out
            head = bytes(self._buffer[:end])
            lengths = _LENGTH.findall(head)
            if len(lengths) != 1:
                raise FramingError("a message over a stream needs exactly one Content-Length")
            total = end + 4 + int(lengths[0])
            if total > MAX_MESSAGE_BYTES:
                raise FramingError("a message is too large")
            if len(self._buffer) < total:
                return out
            out.append(bytes(self._buffer[:total]))
            del self._buffer[:total]
