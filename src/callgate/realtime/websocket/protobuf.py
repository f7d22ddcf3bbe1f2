"""pipecat's protobuf frames (``frames.proto``), the framing of ``/v1/calls/{id}/ws?format=protobuf``.

pipecat's ``ProtobufFrameSerializer`` (Python) and ``@pipecat-ai/websocket-transport``'s
``ProtobufFrameSerializer`` (JavaScript) put one ``pipecat.Frame`` in each binary WebSocket message::

    message TextFrame          { uint64 id = 1; string name = 2; string text = 3; }
    message AudioRawFrame      { uint64 id = 1; string name = 2; bytes audio = 3; uint32 sample_rate = 4;
                                 uint32 num_channels = 5; optional uint64 pts = 6; }
    message TranscriptionFrame { uint64 id = 1; string name = 2; string text = 3; string user_id = 4;
                                 string timestamp = 5; }
    message MessageFrame       { string data = 1; }   // one RTVI message as JSON text
    message Frame { oneof frame { TextFrame text = 1; AudioRawFrame audio = 2;
                                  TranscriptionFrame transcription = 3; MessageFrame message = 4; } }

Four small messages do not justify generated code and a runtime dependency, so this module is the
protobuf wire format (varints and length-delimited fields) written by hand for exactly these messages.
Decoding is strict and bounded: anything malformed raises :class:`FrameError`, never anything else.
Unknown fields are skipped, as protobuf requires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_FRAME_BYTES = 70_000
"""A 64 000-byte audio frame or a 16 384-character RTVI message, plus the envelope."""

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10


class FrameError(ValueError):
    """A binary message that is not a well-formed ``pipecat.Frame`` we accept."""


@dataclass(frozen=True, slots=True)
class AudioRawFrame:
    audio: bytes
    sample_rate: int
    num_channels: int
    id: int = 0
    name: str = ""
    pts: int | None = None


@dataclass(frozen=True, slots=True)
class MessageFrame:
    data: str
    """One RTVI message as JSON text."""


@dataclass(frozen=True, slots=True)
class TextFrame:
    text: str
    id: int = 0
    name: str = ""


@dataclass(frozen=True, slots=True)
class TranscriptionFrame:
    text: str
    user_id: str = ""
    timestamp: str = ""
    id: int = 0
    name: str = ""


Frame = AudioRawFrame | MessageFrame | TextFrame | TranscriptionFrame

# ---------------------------------------------------------------- encoding


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("protobuf varints here are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes_field(field: int, value: bytes) -> bytes:
    return _tag(field, _LEN) + _varint(len(value)) + value if value else b""


def _str_field(field: int, value: str) -> bytes:
    return _bytes_field(field, value.encode("utf-8"))


def _member(field: int, body: bytes) -> bytes:
    """A oneof member: present even when empty."""
    return _tag(field, _LEN) + _varint(len(body)) + body


def _int_field(field: int, value: int) -> bytes:
    return _tag(field, _VARINT) + _varint(value) if value else b""


def encode(frame: Frame) -> bytes:
    """One ``pipecat.Frame`` (proto3: fields at their default value are left out)."""
    match frame:
        case TextFrame():
            body = _int_field(1, frame.id) + _str_field(2, frame.name) + _str_field(3, frame.text)
            return _member(1, body)
        case AudioRawFrame():
            body = (
                _int_field(1, frame.id)
                + _str_field(2, frame.name)
                + _bytes_field(3, frame.audio)
                + _int_field(4, frame.sample_rate)
                + _int_field(5, frame.num_channels)
            )
            if frame.pts is not None:
                body += _tag(6, _VARINT) + _varint(frame.pts)
            return _member(2, body)
        case TranscriptionFrame():
            body = (
                _int_field(1, frame.id)
                + _str_field(2, frame.name)
                + _str_field(3, frame.text)
                + _str_field(4, frame.user_id)
                + _str_field(5, frame.timestamp)
            )
            return _member(3, body)
        case MessageFrame():
            return _member(4, _str_field(1, frame.data))


def audio(pcm16: bytes, sample_rate: int) -> bytes:
    """Agent audio as pipecat sends it: mono PCM16 in an ``AudioRawFrame``."""
    return encode(AudioRawFrame(audio=pcm16, sample_rate=sample_rate, num_channels=1, name="audio"))


def message(rtvi_json: str) -> bytes:
    """An RTVI message in a ``MessageFrame``."""
    return encode(MessageFrame(data=rtvi_json))


# ---------------------------------------------------------------- decoding


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def varint(self) -> int:
        value = 0
        for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
            if self.pos >= len(self.data):
                raise FrameError("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value >= 1 << 64:
                    raise FrameError("varint over 64 bits")
                return value
        raise FrameError("varint longer than 10 bytes")

    def take(self, length: int) -> bytes:
        if length > len(self.data) - self.pos:
            raise FrameError("a length runs past the end of the frame")
        chunk = self.data[self.pos : self.pos + length]
        self.pos += length
        return chunk

    def fields(self) -> list[tuple[int, int, int | bytes]]:
        """Every ``(field number, wire type, value)``; fixed-width values are skipped (returned as 0)."""
        out: list[tuple[int, int, int | bytes]] = []
        while not self.done():
            key = self.varint()
            field, wire_type = key >> 3, key & 7
            if field == 0:
                raise FrameError("field number 0")
            if wire_type == _VARINT:
                out.append((field, wire_type, self.varint()))
            elif wire_type == _LEN:
                out.append((field, wire_type, self.take(self.varint())))
            elif wire_type == _I64:
                self.take(8)
            elif wire_type == _I32:
                self.take(4)
            else:  # groups (3, 4) are not proto3; 6 and 7 do not exist
                raise FrameError(f"unsupported wire type {wire_type}")
        return out


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise FrameError("a string field has the wrong wire type")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("a string field is not UTF-8") from exc


def _blob(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise FrameError("a bytes field has the wrong wire type")
    return value


def _number(value: int | bytes, *, bits: int = 64) -> int:
    if isinstance(value, bytes):
        raise FrameError("an integer field has the wrong wire type")
    return value & ((1 << bits) - 1)  # proto3 truncates a wider varint to the field's width


def _decode_text(body: bytes) -> TextFrame:
    f: dict[int, int | bytes] = {n: v for n, _, v in _Reader(body).fields()}
    return TextFrame(id=_number(f.get(1, 0)), name=_text(f.get(2, b"")), text=_text(f.get(3, b"")))


def _decode_audio(body: bytes) -> AudioRawFrame:
    f: dict[int, int | bytes] = {n: v for n, _, v in _Reader(body).fields()}
    return AudioRawFrame(
        id=_number(f.get(1, 0)),
        name=_text(f.get(2, b"")),
        audio=_blob(f.get(3, b"")),
        sample_rate=_number(f.get(4, 0), bits=32),
        num_channels=_number(f.get(5, 0), bits=32),
        pts=_number(f[6]) if 6 in f else None,
    )


def _decode_transcription(body: bytes) -> TranscriptionFrame:
    f: dict[int, int | bytes] = {n: v for n, _, v in _Reader(body).fields()}
    return TranscriptionFrame(
        id=_number(f.get(1, 0)),
        name=_text(f.get(2, b"")),
        text=_text(f.get(3, b"")),
        user_id=_text(f.get(4, b"")),
        timestamp=_text(f.get(5, b"")),
    )


def _decode_message(body: bytes) -> MessageFrame:
    f: dict[int, int | bytes] = {n: v for n, _, v in _Reader(body).fields()}
    return MessageFrame(data=_text(f.get(1, b"")))


_DECODERS: dict[int, Callable[[bytes], Frame]] = {
    1: _decode_text,
    2: _decode_audio,
    3: _decode_transcription,
    4: _decode_message,
}


def decode(data: bytes) -> Frame:
    """One ``pipecat.Frame``; raises :class:`FrameError` for anything else (never another error)."""
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError("frame too large")
    frame: Frame | None = None
    for field, wire_type, value in _Reader(data).fields():
        decoder = _DECODERS.get(field)
        if decoder is None:
            continue  # an unknown member of the oneof: skipped, as protobuf does
        if wire_type != _LEN or not isinstance(value, bytes):
            raise FrameError("a frame member has the wrong wire type")
        frame = decoder(value)  # for a oneof, the last member on the wire wins
    if frame is None:
        raise FrameError("the frame carries none of text, audio, transcription or message")
    return frame
