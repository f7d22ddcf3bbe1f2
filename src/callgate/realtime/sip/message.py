"""SIP messages as they cross the WebSocket: strict parsing, the responses we send, the requests we send.

Parsing sits on ``sipmessage`` (typed, maintained, by aiortc's author) and adds what a server needs on
top: a size and a header-count limit checked before any parsing, headers indexed by name (sipmessage's
``Headers`` scans every header per lookup, which made a message with thousands of distinct headers cost
quadratic time), the mandatory headers of RFC 3261 §8.1.1 parsed up front (so handlers never meet a
header that fails to parse), Content-Length checked against the frame, and a best-effort 400 for a
request too broken to parse. Any failure is a :class:`SipParseError`, never another exception: the
hypothesis fuzz in ``tests/realtime/sip`` holds this module to that.

Responses copy Via, From, To, Call-ID and CSeq *verbatim* from the request (re-serialising them through
``sipmessage`` would percent-encode parameters such as ``+sip.instance``, which the client then fails to
recognise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sipmessage
from sipmessage.message import COMPACT_FORMS

MAX_MESSAGE_BYTES = 65_535
MAX_HEADERS = 128
"""Header lines a message may carry; browser softphones send about 15 (an INVITE via proxies, 30)."""
SERVER = "callgate"
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+\-.]*):")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ECHOED = ("Via", "From", "To", "Call-ID", "CSeq")
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id"}

REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    513: "Message Too Large",
}


class SipParseError(Exception):
    """A message that cannot be handled. ``reply`` is the error response to send, if one can be built."""

    def __init__(self, reason: str, *, reply: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    raw_uri: str
    uri: sipmessage.URI
    headers: sipmessage.Headers
    body: bytes
    call_id: str
    cseq: int
    branch: str
    from_uri: sipmessage.URI
    from_tag: str | None
    to_uri: sipmessage.URI
    to_tag: str | None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_list(self, name: str) -> list[str]:
        """Every value of a header, comma-separated values split (for token lists like Require)."""
        return [v.strip() for value in self.headers.getlist(name) for v in value.split(",") if v.strip()]

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    call_id: str
    cseq: int
    method: str
    headers: sipmessage.Headers = field(repr=False)


def parse(data: bytes) -> Request | Response:
    """Parse one WebSocket frame as a SIP message. Raises :class:`SipParseError` on anything malformed."""
    if len(data) > MAX_MESSAGE_BYTES:
        head = data[:8192].split(b"\r\n\r\n", 1)[0]
        raise SipParseError("message too large", reply=_salvage(head, 513))
    head = data.split(b"\r\n\r\n", 1)[0]
    if head.count(b"\r\n") > MAX_HEADERS:
        reason = f"more than {MAX_HEADERS} headers"
        raise SipParseError(reason, reply=_salvage(head, 400, reason))
    start = head.split(b"\r\n", 1)[0].split(b" ")
    if len(start) == 3 and start[2] == b"SIP/2.0":
        scheme = uri_scheme(start[1].decode(errors="replace"))
        if scheme not in ("sip", "sips", "tel"):
            raise SipParseError("unsupported URI scheme", reply=_salvage(head, 416))
    try:
        message = _parse_message(data)
        if isinstance(message, sipmessage.Response):
            return _response(message)
        return _request(message, data)
    except SipParseError as exc:
        raise SipParseError(exc.reason, reply=exc.reply or _salvage(head, 400, exc.reason)) from None
    except Exception as exc:  # sipmessage raises ValueError, but a fuzzer finds others; all mean 400
        raise SipParseError(f"malformed message: {exc}", reply=_salvage(head, 400)) from exc


class IndexedHeaders(sipmessage.Headers):
    """``sipmessage.Headers`` looked up by a dict (insertion-ordered: ``keys()`` keep their order)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_name: dict[str, tuple[str, list[str]]] = {}

    def add(self, key: str, value: str) -> None:
        found = self._by_name.get(key.lower())
        if found is None:
            self._by_name[key.lower()] = (key, [value])
        else:
            found[1].append(value)

    def get(self, key: str, default: str | None = None) -> str | None:
        found = self._by_name.get(key.lower())
        return found[1][0] if found else default

    def getlist(self, key: str) -> list[str]:
        found = self._by_name.get(key.lower())
        return found[1] if found else []

    def keys(self) -> list[str]:
        return [name for name, _ in self._by_name.values()]

    def remove(self, key: str) -> None:
        self._by_name.pop(key.lower(), None)

    def set(self, key: str, value: str) -> None:
        self.setlist(key, [value])

    def setlist(self, key: str, values: list[str]) -> None:
        found = self._by_name.get(key.lower())
        self._by_name[key.lower()] = (found[0] if found else key, values)

    def __getitem__(self, key: str) -> str:
        found = self._by_name.get(key.lower())
        if not found:
            raise KeyError(key)
        return found[1][0]

    def __str__(self) -> str:
        return "".join(f"{name}: {v}\r\n" for name, values in self._by_name.values() for v in values) + "\r\n"


def _parse_message(data: bytes) -> sipmessage.Request | sipmessage.Response:
    """``sipmessage.Message.parse`` line for line, but into :class:`IndexedHeaders` (linear time)."""
    header, found, body = data.partition(b"\r\n\r\n")
    if not found:
        raise ValueError("SIP message has too few lines")
    lines = header.decode("utf8").split("\r\n")
    bits = lines[0].split(" ", 2)
    message: sipmessage.Request | sipmessage.Response
    if len(bits) > 2 and bits[2] == "SIP/2.0":
        message = sipmessage.Request(method=bits[0], uri=sipmessage.URI.parse(bits[1]), body=body)
    elif len(bits) > 2 and bits[0] == "SIP/2.0":
        message = sipmessage.Response(code=int(bits[1]), phrase=bits[2], body=body)
    else:
        raise ValueError("SIP message is neither request nor response")
    headers = IndexedHeaders()
    for line in lines[1:]:
        key, val = line.split(":", 1)
        headers.add(COMPACT_FORMS.get(key.lower(), key), val.strip())
    message.headers = headers
    return message


def _request(message: sipmessage.Request, data: bytes) -> Request:
    if not _TOKEN.match(message.method):
        raise SipParseError("the method is not a token")
    raw_uri = data.split(b" ", 2)[1].decode()
    for name in _ECHOED:
        if not message.headers.get(name):
            raise SipParseError(f"missing {name} header")
    vias = message.via
    branch = vias[0].parameters.get("branch") if vias else None
    if not branch:
        raise SipParseError("the top Via has no branch")
    cseq = message.cseq
    if cseq.method != message.method or cseq.sequence >= 2**31:
        raise SipParseError("CSeq does not match the request")
    length = message.content_length
    if length is not None and length != len(message.body):
        raise SipParseError("Content-Length does not match the body")
    if message.max_forwards is not None and message.max_forwards < 0:
        raise SipParseError("negative Max-Forwards")
    names = message.headers.keys()
    if any(_CONTROL.search(v) for name in names for v in message.headers.getlist(name)):
        raise SipParseError("control characters in a header")
    sender, receiver = message.from_address, message.to_address
    return Request(
        method=message.method,
        raw_uri=raw_uri,
        uri=message.uri,
        headers=message.headers,
        body=message.body,
        call_id=message.call_id,
        cseq=cseq.sequence,
        branch=branch,
        from_uri=sender.uri,
        from_tag=sender.parameters.get("tag"),
        to_uri=receiver.uri,
        to_tag=receiver.parameters.get("tag"),
    )


def _response(message: sipmessage.Response) -> Response:
    cseq = message.cseq
    if not 100 <= message.code <= 699:
        raise SipParseError("status code out of range")
    return Response(
        status=message.code,
        call_id=message.call_id,
        cseq=cseq.sequence,
        method=cseq.method,
        headers=message.headers,
    )


def _salvage(head: bytes, status: int, reason: str | None = None) -> bytes | None:
    """An error response for a request we could not parse, when its echoed headers can be found."""
    try:
        lines = head.decode().split("\r\n")
    except UnicodeDecodeError:
        return None
    start = lines[0].split(" ")
    if len(start) != 3 or start[2] != "SIP/2.0" or start[0] in ("", "ACK") or _CONTROL.search(lines[0]):
        return None  # a response or an ACK: never answered
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        key = _COMPACT.get(name.strip().lower(), name.strip().lower())
        if sep and key in ("via", "from", "to", "call-id", "cseq") and not _CONTROL.search(value):
            found.setdefault(key, []).append(value.strip())
    if not found.get("via") or any(
        len(found.get(name, [])) != 1 for name in ("from", "to", "call-id", "cseq")
    ):
        return None
    try:  # echo only what the client can match its response with
        for value in found["via"]:
            sipmessage.Via.parse_many(value)
        sipmessage.CSeq.parse(found["cseq"][0])
        sipmessage.Address.parse(found["from"][0])
        sipmessage.Address.parse(found["to"][0])
    except ValueError:
        return None
    echoed = [(name, value) for name in _ECHOED for value in found[name.lower()]]
    extra = [("Warning", f'399 {SERVER} "{reason}"')] if reason and '"' not in reason else []
    return _serialize(f"SIP/2.0 {status} {REASONS[status]}", [*echoed, *extra], b"")


def response(
    request: Request,
    status: int,
    *,
    reason: str | None = None,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> bytes:
    """A response to ``request``; ``to_tag`` is added to To unless the request already had one."""
    echoed: list[tuple[str, str]] = []
    for name in _ECHOED:
        for value in request.headers.getlist(name):
            if name == "To" and to_tag and request.to_tag is None and status > 100:
                value = f"{value};tag={to_tag}"
            echoed.append((name, value))
    phrase = reason or REASONS.get(status, "Unknown")
    return _serialize(f"SIP/2.0 {status} {phrase}", [*echoed, *(headers or [])], body)


def request(method: str, uri: str, *, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """A request we originate (BYE): ``headers`` must include Via, From, To, Call-ID and CSeq."""
    headers = [*headers, ("Max-Forwards", "70")]
    return _serialize(f"{method} {uri} SIP/2.0", headers, body, agent="User-Agent")


def _serialize(start: str, headers: list[tuple[str, str]], body: bytes, *, agent: str = "Server") -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers)]
    lines += [f"{agent}: {SERVER}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def uri_scheme(raw_uri: str) -> str | None:
    """The scheme of a URI as received (``sip``, ``tel``, ``http``…), lower case."""
    match = _SCHEME.match(raw_uri)
    return match.group(1).lower() if match else None
