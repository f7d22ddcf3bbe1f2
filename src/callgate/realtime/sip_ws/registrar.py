"""The registrations of one WebSocket connection (RFC 3261 §10.3, as much as a one-call account needs).

callgate never routes a request *to* a Contact: requests inside a dialog go back over the connection the
dialog lives on (RFC 7118 §5). A binding therefore only records that this connection registered this
username, which is what "REGISTER before INVITE" checks. The 200 lists the bindings with their
``expires`` (JsSIP ignores a 2xx without its Contact and an ``expires``), echoing each Contact as the
client wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import sipmessage

from callgate.realtime.sip.message import Request

DEFAULT_EXPIRES = 600
MAX_EXPIRES = 600
MAX_BINDINGS = 8
_EXPIRES_PARAM = re.compile(r";\s*expires\s*=\s*[^;,\s]*", re.IGNORECASE)


class RegisterError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Binding:
    contact: str
    """The Contact as the client wrote it, without an ``expires`` parameter."""
    expires_at: float


def split_contacts(value: str) -> list[str]:
    """Split a Contact header value on the commas between contacts (not those inside quotes or <>)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(value):
        if char == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and char == ",":
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def _without_expires(contact: str) -> str:
    cut = contact.rfind(">")
    return contact[: cut + 1] + _EXPIRES_PARAM.sub("", contact[cut + 1 :]) if cut >= 0 else contact


def _expires(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 10:
        raise RegisterError(400, "Invalid Expires")
    return min(int(raw), MAX_EXPIRES)


class Registrar:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._bindings: dict[str, dict[str, _Binding]] = {}

    def registered(self, username: str) -> bool:
        now = self._clock()
        return any(b.expires_at > now for b in self._bindings.get(username, {}).values())

    def update(self, username: str, request: Request) -> list[tuple[str, str]]:
        """Apply a REGISTER (already authenticated) and return the reply's Contact headers."""
        now = self._clock()
        bindings = self._bindings.setdefault(username, {})
        for key, binding in list(bindings.items()):
            if binding.expires_at <= now:
                del bindings[key]
        default = _expires(request.header("Expires"), DEFAULT_EXPIRES)
        contacts = [c for value in request.headers.getlist("Contact") for c in split_contacts(value)]
        if contacts == ["*"]:
            if default != 0:
                raise RegisterError(400, "Wildcard Contact Needs Expires 0")
            bindings.clear()
            contacts = []
        for raw in contacts:
            try:
                address = sipmessage.Address.parse(raw)
            except ValueError as exc:
                raise RegisterError(400, "Invalid Contact") from exc
            expires = _expires(address.parameters.get("expires"), default)
            key = str(address.uri)
            if expires == 0:
                bindings.pop(key, None)
            elif key in bindings or len(bindings) < MAX_BINDINGS:
                bindings[key] = _Binding(_without_expires(raw), now + expires)
            else:
                raise RegisterError(403, "Too Many Contacts")
        return [
            ("Contact", f"{b.contact};expires={max(1, round(b.expires_at - now))}") for b in bindings.values()
        ]

    def forget(self, username: str) -> None:
        self._bindings.pop(username, None)
