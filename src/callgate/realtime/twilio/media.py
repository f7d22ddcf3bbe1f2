"""The Media Streams wire protocol: JSON text frames, one event each (Twilio's public documentation).

Twilio → callgate: ``connected``, ``start`` (``streamSid``, ``callSid``, ``mediaFormat``,
``customParameters``), ``media`` (base64 μ-law at 8 kHz, 20 ms a frame), ``dtmf``, ``mark`` (a mark
callgate sent has been played, or dropped by a ``clear``), ``stop``.
callgate → Twilio: ``media``, ``mark``, ``clear``.

:func:`parse` checks every field it reads; anything else is a :class:`MediaStreamError`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from callgate.realtime.digits import KEYS

__all__ = [
    "MAX_FRAME_CHARS",
    "Connected",
    "Dtmf",
    "Event",
    "Mark",
    "Media",
    "MediaStreamError",
    "Start",
    "Stop",
    "Unknown",
    "clear",
    "mark",
    "media",
    "parse",
]

MAX_FRAME_CHARS = 65_536
"""Far above any frame Twilio sends (a 20 ms ``media`` frame is about 300 characters)."""
MAX_AUDIO_BYTES = 8000
"""One second of μ-law per frame at most (Twilio sends 160 bytes)."""
MAX_PARAMETERS = 32
ENCODING = "audio/x-mulaw"


class MediaStreamError(ValueError):
    """A frame that is not a Media Streams event callgate can accept."""


@dataclass(frozen=True, slots=True)
class Connected:
    pass


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    ulaw: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Unknown:
    """An event this version does not know (ignored, so Twilio can add events)."""

    event: str


Event = Connected | Start | Media | Dtmf | Mark | Stop | Unknown


def _object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise MediaStreamError(f"`{key}` must be an object")
    return value


def _string(obj: dict[str, Any], key: str, *, max_len: int = 256, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > max_len:
        raise MediaStreamError(f"`{key}` must be a string of at most {max_len} characters")
    return value


def _start(obj: dict[str, Any]) -> Start:
    start = _object(obj, "start")
    media_format = start.get("mediaFormat")
    if media_format is not None:
        if not isinstance(media_format, dict):
            raise MediaStreamError("`mediaFormat` must be an object")
        if (media_format.get("encoding"), media_format.get("sampleRate"), media_format.get("channels")) != (
            ENCODING,
            8000,
            1,
        ):
            raise MediaStreamError("only audio/x-mulaw at 8000 Hz, one channel, is supported")
    raw = start.get("customParameters") or {}
    if not isinstance(raw, dict) or len(raw) > MAX_PARAMETERS:
        raise MediaStreamError("`customParameters` must be an object of strings")
    parameters: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(value, str) or len(value) > 4096:
            raise MediaStreamError("`customParameters` must be an object of strings")
        parameters[name] = value
    stream_sid = _string(start, "streamSid", required=False) or _string(obj, "streamSid")
    return Start(
        stream_sid=stream_sid,
        call_sid=_string(start, "callSid"),
        account_sid=_string(start, "accountSid", required=False),
        parameters=parameters,
    )


def _media(obj: dict[str, Any]) -> Media:
    body = _object(obj, "media")
    track = body.get("track", "inbound")
    if track not in ("inbound", "inbound_track"):
        raise MediaStreamError("only the inbound track is expected")
    payload = _string(body, "payload", max_len=MAX_AUDIO_BYTES * 2)
    try:
        ulaw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaStreamError("`payload` is not base64") from exc
    if len(ulaw) > MAX_AUDIO_BYTES:
        raise MediaStreamError("media frame too large")
    return Media(ulaw)


def parse(raw: str | bytes) -> Event:
    """One Media Streams frame; raises :class:`MediaStreamError` for anything malformed."""
    if isinstance(raw, bytes):
        raise MediaStreamError("Media Streams frames are JSON text, not binary")
    if len(raw) > MAX_FRAME_CHARS:
        raise MediaStreamError("frame too large")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MediaStreamError("frame is not JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        raise MediaStreamError('frames are {"event": ..., ...}')
    match obj["event"]:
        case "connected":
            return Connected()
        case "start":
            return _start(obj)
        case "media":
            return _media(obj)
        case "dtmf":
            digit = _string(_object(obj, "dtmf"), "digit", max_len=1).upper()
            if digit not in KEYS:
                raise MediaStreamError("`digit` must be one of 0-9, *, #, A-D")
            return Dtmf(digit)
        case "mark":
            return Mark(_string(_object(obj, "mark"), "name"))
        case "stop":
            return Stop()
        case other:
            return Unknown(other[:64])


def media(stream_sid: str, ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
