"""What a re-INVITE or UPDATE may change without renegotiating the WebRTC media: direction (hold).

A softphone puts a call on hold by re-offering the same session with ``a=sendonly`` (or ``inactive``)
and takes it off hold with ``a=sendrecv``; session-timer refreshes re-offer it unchanged. Such an offer
keeps the ICE credentials and the DTLS fingerprint, so the media bridge carries on as it is and the
answer is our previous answer with the matching direction and a higher ``o=`` version. Anything else
(an ICE restart, another fingerprint, more or fewer media sections) would need a new peer connection:
it is refused with 488 and the call continues unchanged (RFC 3261 §14.2).
"""

from __future__ import annotations

import re

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
_ORIGIN = re.compile(r"^(o=\S+ \S+ )(\d+)( .*)$")


def _lines(sdp: str) -> list[str]:
    return [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]


def _sections(sdp: str) -> list[list[str]]:
    """The session section followed by each media section, as lists of lines."""
    sections: list[list[str]] = [[]]
    for line in _lines(sdp):
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _attribute(lines: list[str], name: str) -> str | None:
    prefix = f"a={name}:"
    return next((line[len(prefix) :].strip() for line in lines if line.startswith(prefix)), None)


def _media_identity(sdp: str) -> list[tuple[str | None, str | None, str | None]]:
    """Per media section: (ice-ufrag, ice-pwd, fingerprint), session-level values as the default."""
    session, *media = _sections(sdp)

    def value(lines: list[str], name: str) -> str | None:
        return _attribute(lines, name) or _attribute(session, name)

    return [(value(m, "ice-ufrag"), value(m, "ice-pwd"), value(m, "fingerprint")) for m in media]


def direction(sdp: str) -> str:
    """The direction of the first audio section (default ``sendrecv``)."""
    session, *media = _sections(sdp)
    audio = next((m for m in media if m[0].startswith("m=audio ")), [])
    for lines in (audio, session):
        for line in lines:
            if line[2:] in DIRECTIONS and line.startswith("a="):
                return line[2:]
    return "sendrecv"


def same_session(old_offer: str, new_offer: str) -> bool:
    """True if ``new_offer`` keeps the media sections, ICE credentials and fingerprints of ``old_offer``."""
    old, new = _sections(old_offer)[1:], _sections(new_offer)[1:]
    if [m[0].split(" ", 1)[0] for m in old] != [m[0].split(" ", 1)[0] for m in new]:
        return False
    return _media_identity(old_offer) == _media_identity(new_offer)


def reanswer(answer: str, *, offer_direction: str, version: int) -> str:
    """Our previous ``answer`` re-issued for a re-offer with ``offer_direction``, at ``o=`` ``version``."""
    wanted = ANSWER_DIRECTION[offer_direction]
    out: list[str] = []
    in_audio = False
    for line in _lines(answer):
        if line.startswith("m="):
            in_audio = line.startswith("m=audio ")
        if line.startswith("o=") and (match := _ORIGIN.match(line)):
            line = f"{match.group(1)}{version}{match.group(3)}"
        elif in_audio and line.startswith("a=") and line[2:] in DIRECTIONS:
            line = f"a={wanted}"
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def origin_version(sdp: str) -> int:
    for line in _lines(sdp):
        if match := _ORIGIN.match(line):
            return int(match.group(2))
    return 0
