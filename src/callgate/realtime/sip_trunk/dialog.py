"""One INVITE dialog with a carrier (RFC 3261 §12), from either side: we answered (UAS) or we called (UAC).

The dialog does no I/O. It knows its identifiers, the route set and the remote target, counts CSeq, and
builds the requests we send inside it (BYE, the ACK of a 2xx). In-dialog requests go over the
dialog's :class:`~callgate.realtime.sip_trunk.transactions.Channel` (the peer that sent or received the
INVITE), with the remote target as Request-URI and the route set as Route headers.
"""

from __future__ import annotations

import re
import secrets

from callgate.realtime.sip import message
from callgate.realtime.sip.dialog import DialogError, new_branch, new_tag, remote_target
from callgate.realtime.sip.message import Request

__all__ = ["DialogError", "TrunkDialog", "contact_uri", "new_branch", "new_tag"]

_ANGLE = re.compile(r"<([^>]*)>")


def contact_uri(value: str) -> str:
    """The URI of a Contact header value as written."""
    found = _ANGLE.search(value)
    return found.group(1) if found else value.split(";", 1)[0].strip()


class TrunkDialog:
    def __init__(
        self,
        *,
        call_id: str,
        local_uri: str,
        remote_uri: str,
        remote_target: str,
        routes: list[str],
        local_cseq: int,
        remote_cseq: int,
        local_contact: str,
        via: str,
    ) -> None:
        self.call_id = call_id
        self.local_uri = local_uri
        """Our From header value in requests we send (with our tag)."""
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.routes = routes
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.local_contact = local_contact
        self.via = via
        """``SIP/2.0/UDP host:port``: our Via without the branch."""
        self.live = True

    @classmethod
    def answering(cls, invite: Request, *, local_tag: str, local_contact: str, via: str) -> TrunkDialog:
        """The dialog our 2xx to ``invite`` forms (raises :class:`DialogError` without a usable Contact)."""
        return cls(
            call_id=invite.call_id,
            local_uri=f"{invite.headers['To']};tag={local_tag}",
            remote_uri=invite.headers["From"],
            remote_target=remote_target(invite),
            routes=list(invite.headers.getlist("Record-Route")),
            local_cseq=secrets.randbelow(10_000) + 1,
            remote_cseq=invite.cseq,
            local_contact=local_contact,
            via=via,
        )

    @property
    def local_tag(self) -> str | None:
        return _tag(self.local_uri)

    @property
    def remote_tag(self) -> str | None:
        return _tag(self.remote_uri)

    def matches(self, request: Request) -> bool:
        return (
            request.call_id == self.call_id
            and request.to_tag == self.local_tag
            and request.from_tag == self.remote_tag
        )

    def accept_cseq(self, request: Request) -> bool:
        """In-dialog requests must count up (§12.2.2); ACK and CANCEL reuse their INVITE's."""
        if request.method in ("ACK", "CANCEL"):
            return True
        if request.cseq <= self.remote_cseq:
            return False
        self.remote_cseq = request.cseq
        return True

    def request(
        self,
        method: str,
        *,
        cseq: int | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> tuple[bytes, str]:
        """A request in this dialog and its branch; a new CSeq unless ``cseq`` (the ACK of a 2xx)."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        branch = new_branch()
        data = message.request(
            method,
            self.remote_target,
            headers=[
                ("Via", f"{self.via};branch={branch};rport"),
                *(("Route", route) for route in self.routes),
                ("From", self.local_uri),
                ("To", self.remote_uri),
                ("Call-ID", self.call_id),
                ("CSeq", f"{cseq} {method}"),
                ("Contact", f"<{self.local_contact}>"),
                *(headers or []),
            ],
            body=body,
        )
        return data, branch

    def bye(self, *, reason: str) -> tuple[bytes, str]:
        self.live = False
        return self.request("BYE", headers=[("Reason", f'SIP;cause=200;text="{_quote(reason)}"')])


def _tag(value: str) -> str | None:
    found = re.search(r";\s*tag=([^;>\s]+)", value.split(">", 1)[-1] if ">" in value else value)
    return found.group(1) if found else None


def _quote(text: str) -> str:
    return text.replace('"', "'").replace("\\", "/")[:120]
