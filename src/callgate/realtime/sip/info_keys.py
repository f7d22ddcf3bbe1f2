"""Key presses carried by SIP INFO.

``application/dtmf-relay`` (``Signal=5`` / ``Duration=160``) or ``application/dtmf`` (``5``); the key goes
to the call's session, whose :class:`~callgate.realtime.digits.DigitCollector` also takes the RFC 4733
telephone-events of the media and gathers keys into one typed caller turn, ``"DTMF 1234#"``, the same
way for every transport (see :mod:`callgate.realtime.digits`).
"""

from __future__ import annotations

from callgate.realtime.digits import KEYS

__all__ = ["CONTENT_TYPES", "DtmfError", "parse_info"]

CONTENT_TYPES = ("application/dtmf-relay", "application/dtmf")


class DtmfError(ValueError):
    """An INFO body that is not a key press."""


def parse_info(content_type: str | None, body: bytes) -> str:
    """The key an INFO request carries; raises :class:`DtmfError`."""
    try:
        text = body.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise DtmfError("the body is not ASCII") from exc
    if content_type == "application/dtmf":
        key = text
    elif content_type == "application/dtmf-relay":
        fields = dict(
            (name.strip().lower(), value.strip())
            for name, sep, value in (line.partition("=") for line in text.splitlines())
            if sep
        )
        key = fields.get("signal", "")
    else:
        raise DtmfError(f"unsupported content type {content_type!r}")
    key = key.upper()
    if key not in KEYS:
        raise DtmfError(f"not a DTMF key: {key[:8]!r}")
    return key
