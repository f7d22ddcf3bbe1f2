"""SDP offer/answer (RFC 3264) for plain RTP/AVP audio: PCMU or PCMA at 8 kHz, plus telephone-event.

Only what a trunk offers is understood: one audio stream, ``c=IN IP4``/``IP6``, static or ``rtpmap``ped
payload types, ``a=sendrecv|sendonly|recvonly|inactive``. Anything else in the offer is ignored;
no usable audio is :class:`NoCommonCodec` (answered 488).
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

from callgate.realtime.media.rtp_session import RtpCodec

_STATIC = {0: "PCMU", 8: "PCMA"}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MAX_SDP_BYTES = 8192


class NoCommonCodec(ValueError):
    """The offer has no audio stream callgate can take (no PCMU/PCMA, no address, malformed)."""


@dataclass(frozen=True, slots=True)
class Offer:
    host: str
    port: int
    codec: RtpCodec
    direction: str


def parse_offer(body: bytes) -> Offer:
    if len(body) > MAX_SDP_BYTES:
        raise NoCommonCodec("the SDP is too large")
    try:
        lines = body.decode("utf-8").replace("\r\n", "\n").split("\n")
    except UnicodeDecodeError as exc:
        raise NoCommonCodec("the SDP is not UTF-8") from exc
    session_host: str | None = None
    media: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        elif line.startswith("c="):
            session_host = _connection(line)
    for section in media:
        offer = _audio(section, session_host)
        if offer is not None:
            return offer
    raise NoCommonCodec("no audio stream with PCMU or PCMA over RTP/AVP")


def _connection(line: str) -> str | None:
    parts = line[2:].split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        return None
    try:
        return str(ipaddress.ip_address(parts[2].split("/")[0]))
    except ValueError:
        return None


def _audio(section: list[str], session_host: str | None) -> Offer | None:
    m = section[0][2:].split()
    if len(m) < 4 or m[0] != "audio" or m[2] != "RTP/AVP" or not m[1].isdigit():
        return None
    port = int(m[1])
    formats = [int(f) for f in m[3:] if f.isdigit() and int(f) < 128]
    names = {pt: name for pt, name in _STATIC.items() if pt in formats}
    host, direction = session_host, "sendrecv"
    for line in section[1:]:
        if line.startswith("c="):
            host = _connection(line) or host
        elif line.startswith("a=rtpmap:"):
            pt, _, encoding = line[9:].partition(" ")
            if pt.isdigit() and int(pt) in formats:
                names[int(pt)] = encoding.strip()
        elif line[2:] in _DIRECTIONS and line.startswith("a="):
            direction = line[2:]
    if host is None or not 0 < port < 65536:
        return None
    audio = [pt for pt in formats if names.get(pt, "").upper().split("/")[0] in ("PCMU", "PCMA")]
    if not audio:
        return None
    law = names[audio[0]].upper().split("/")[0]
    events = [pt for pt in formats if names.get(pt, "").lower().startswith("telephone-event/8000")]
    codec = RtpCodec(audio[0], "PCMU" if law == "PCMU" else "PCMA", events[0] if events else None)
    return Offer(host=host, port=port, codec=codec, direction=direction)


_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


def answer(
    offer: Offer, *, host: str, port: int, session_id: int | None = None, version: int | None = None
) -> bytes:
    """The answer: the chosen codec (and telephone-event) on ``host:port``. A re-answer in the same
    call keeps ``session_id`` and counts ``version`` up (RFC 3264 §8)."""
    return _description(
        [offer.codec], host=host, port=port, direction=_ANSWER_DIRECTION[offer.direction],
        session_id=session_id, version=version,
    )  # fmt: skip


OFFERED = (RtpCodec(0, "PCMU", 101), RtpCodec(8, "PCMA", 101))
"""What callgate offers when it calls out: PCMU, then PCMA, and telephone-event on 101."""


def offer(*, host: str, port: int, session_id: int | None = None) -> bytes:
    """Our offer for an outbound call: :data:`OFFERED` on ``host:port``, ``sendrecv``."""
    return _description(list(OFFERED), host=host, port=port, direction="sendrecv", session_id=session_id)


def parse_answer(body: bytes) -> Offer:
    """The carrier's answer to :func:`offer` (its first audio format is the one chosen)."""
    return parse_offer(body)


def _description(
    codecs: list[RtpCodec],
    *,
    host: str,
    port: int,
    direction: str,
    session_id: int | None = None,
    version: int | None = None,
) -> bytes:
    family = "IP6" if ":" in host else "IP4"
    sid = session_id if session_id is not None else secrets.randbelow(2**62)
    formats = [str(codec.payload_type) for codec in codecs]
    attributes = [f"a=rtpmap:{codec.payload_type} {codec.name}/8000" for codec in codecs]
    events = sorted({c.dtmf_payload_type for c in codecs if c.dtmf_payload_type is not None})
    for pt in events:
        formats.append(str(pt))
        attributes += [f"a=rtpmap:{pt} telephone-event/8000", f"a=fmtp:{pt} 0-16"]
    lines = [
        "v=0",
        f"o=callgate {sid} {version if version is not None else sid} IN {family} {host}",
        "s=callgate",
        f"c=IN {family} {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(formats)}",
        *attributes,
        "a=ptime:20",
        f"a={direction}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
