"""The TwiML documents callgate answers Twilio with (all values XML-escaped)."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

__all__ = ["connect_stream", "dial", "dial_target", "reject", "say_and_hang_up"]

_HEAD = '<?xml version="1.0" encoding="UTF-8"?>'
_PHONE = re.compile(r"^\+?[0-9*#]{3,32}$")


def _response(body: str) -> str:
    return f"{_HEAD}<Response>{body}</Response>"


def connect_stream(url: str, parameters: dict[str, str]) -> str:
    """Connect the call to a bidirectional Media Stream at ``url`` (``wss://…``), passing
    ``parameters`` as the stream's ``customParameters`` (Twilio strips a stream URL's query string)."""
    params = "".join(
        f"<Parameter name={quoteattr(name)} value={quoteattr(value)}/>" for name, value in parameters.items()
    )
    return _response(f"<Connect><Stream url={quoteattr(url)}>{params}</Stream></Connect>")


def reject(reason: str = "busy") -> str:
    """Refuse the call before answering it (``busy`` or ``rejected``): nothing is billed."""
    return _response(f"<Reject reason={quoteattr(reason)}/>")


def say_and_hang_up(text: str) -> str:
    return _response(f"<Say>{escape(text)}</Say><Hangup/>")


def dial_target(target: str) -> str | None:
    """The ``<Dial>`` noun for a transfer target: ``tel:+1…`` or a bare number → ``<Number>``,
    ``sip:…`` → ``<Sip>``; None for anything else (a name Twilio cannot dial)."""
    target = target.strip()
    if target.lower().startswith(("sip:", "sips:")):
        return f"<Sip>{escape(target)}</Sip>"
    number = target[4:] if target.lower().startswith("tel:") else target
    number = number.replace(" ", "").replace("-", "")
    if _PHONE.match(number):
        return f"<Number>{escape(number)}</Number>"
    return None


def dial(target: str) -> str | None:
    """TwiML that hands the live call to ``target`` (a blind transfer); None if it cannot be dialled."""
    noun = dial_target(target)
    return _response(f"<Dial>{noun}</Dial>") if noun is not None else None
