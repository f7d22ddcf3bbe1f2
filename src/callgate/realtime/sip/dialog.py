"""The UAS side of one INVITE dialog (RFC 3261 §12): its identifiers, sequence numbers and remote target.

The dialog does no I/O: it matches requests to itself, checks their CSeq, and builds the BYE we send
when the agent or the API ends the call. Its lifecycle is :class:`DialogState` with one ``_set_state``.
"""

from __future__ import annotations

import enum
import logging
import re
import secrets

import sipmessage

from callgate.realtime.sip import message
from callgate.realtime.sip.message import Request

log = logging.getLogger(__name__)

_ANGLE = re.compile(r"<([^>]*)>")


class DialogState(enum.Enum):
    EARLY = "early"
    """We answered 200; the ACK has not arrived."""
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogError(ValueError):
    """The INVITE cannot form a dialog (no usable Contact)."""


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)


def remote_target(request: Request) -> str:
    """The Contact URI of a request, as written; raises :class:`DialogError` if there is none."""
    contacts = request.headers.getlist("Contact")
    if len(contacts) != 1:
        raise DialogError("an INVITE needs exactly one Contact")
    raw = contacts[0].strip()
    found = _ANGLE.search(raw)
    uri = found.group(1) if found else raw.split(";", 1)[0]
    try:
        parsed = sipmessage.URI.parse(uri)
    except ValueError as exc:
        raise DialogError("the Contact is not a SIP URI") from exc
    if parsed.scheme not in ("sip", "sips"):
        raise DialogError("the Contact is not a SIP URI")
    return uri


class Dialog:
    """Created from the dialog-forming INVITE; ``local_contact`` is our Contact URI."""

    def __init__(self, invite: Request, *, local_contact: str, via_host: str, via_transport: str) -> None:
        self.call_id = invite.call_id
        self.local_tag = new_tag()
        self.remote_tag = invite.from_tag
        self.remote_target = remote_target(invite)
        self.local_contact = local_contact
        self._remote_uri = invite.headers["From"]
        self._local_uri = f"{invite.headers['To']};tag={self.local_tag}"
        self._routes = list(invite.headers.getlist("Record-Route"))
        self._via = f"SIP/2.0/{via_transport} {via_host}"
        self.remote_cseq = invite.cseq
        self.local_cseq = secrets.randbelow(10_000) + 1
        self.invite_cseq = invite.cseq
        """CSeq of the INVITE whose 2xx awaits an ACK (the dialog's, or a re-INVITE's)."""
        self.state = DialogState.EARLY

    def _set_state(self, state: DialogState) -> None:
        if state is not self.state:
            log.info("dialog %s -> %s", self.state.value, state.value, extra={"sip_call_id": self.call_id})
            self.state = state

    def matches(self, request: Request) -> bool:
        return (
            request.call_id == self.call_id
            and request.to_tag == self.local_tag
            and request.from_tag == self.remote_tag
        )

    def accept_cseq(self, request: Request) -> bool:
        """In-dialog requests must count up (RFC 3261 §12.2.2); ACK and CANCEL reuse their INVITE's."""
        if request.method in ("ACK", "CANCEL"):
            return True
        if request.cseq <= self.remote_cseq:
            return False
        self.remote_cseq = request.cseq
        return True

    def acknowledge(self, request: Request) -> bool:
        """An ACK arrived: True if it acknowledges the 2xx we are waiting on."""
        if request.cseq != self.invite_cseq or self.state is DialogState.TERMINATED:
            return False
        self._set_state(DialogState.CONFIRMED)
        return True

    def terminate(self) -> None:
        self._set_state(DialogState.TERMINATED)

    @property
    def live(self) -> bool:
        return self.state is not DialogState.TERMINATED

    def bye(self, *, reason: str) -> bytes:
        """The BYE that ends the dialog from our side (the caller answers it over the same socket)."""
        self.local_cseq += 1
        headers = [
            ("Via", f"{self._via};branch={new_branch()}"),
            *(("Route", route) for route in self._routes),
            ("From", self._local_uri),
            ("To", self._remote_uri),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} BYE"),
            ("Contact", f"<{self.local_contact}>"),
            ("Reason", f'SIP;cause=200;text="{reason}"'),
        ]
        return message.request("BYE", self.remote_target, headers=headers)
