"""The SIP parser: strict, and only ever a :class:`SipParseError` on bad input (fuzzed with hypothesis)."""

from __future__ import annotations

import pytest
import sipmessage
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callgate.realtime.sip import message
from callgate.realtime.sip.message import Request, SipParseError

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:u0011223344556677@example.com>\r\n"
    b'From: "Bob" <sip:u0011223344556677@example.com>;tag=a73kszlfl\r\n'
    b"Call-ID: 1j9FpLxk3uxtm8tn@example.com\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b'Contact: <sip:kj3ea@df7jal23ls0d.invalid;transport=ws>;+sip.instance="<urn:uuid:1-2>";expires=600\r\n'
    b"Content-Length: 0\r\n\r\n"
)

INVITE = (
    b"INVITE sip:agent-0011223344556677@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks\r\n"
    b"Max-Forwards: 70\r\n"
    b"t: <sip:agent-0011223344556677@example.com>\r\n"
    b"f: <sip:u0011223344556677@example.com>;tag=a73kszlfl\r\n"
    b"i: 3848276298220188511@df7jal23ls0d.invalid\r\n"
    b"CSeq: 2 INVITE\r\n"
    b"X-Callgate-Call-Id: call_00112233445566778899aabbccddeeff\r\n"
    b"m: <sip:kj3ea@df7jal23ls0d.invalid;transport=ws>\r\n"
    b"c: application/sdp\r\n"
    b"l: 14\r\n\r\n"
    b"v=0\r\no=- 1 1\r\n"
)

RESPONSE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/WSS callgate.invalid;branch=z9hG4bK1\r\n"
    b"To: <sip:u1@example.com>;tag=1\r\nFrom: <sip:agent@example.com>;tag=2\r\n"
    b"Call-ID: x\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n"
)


def test_parses_a_register() -> None:
    req = message.parse(REGISTER)
    assert isinstance(req, Request)
    assert (req.method, req.raw_uri, req.cseq, req.branch) == (
        "REGISTER",
        "sip:example.com",
        1,
        "z9hG4bKnashds7",
    )
    assert req.from_tag == "a73kszlfl" and req.to_tag is None
    assert req.to_uri.user == "u0011223344556677"


def test_parses_compact_headers_and_a_body() -> None:
    req = message.parse(INVITE)
    assert isinstance(req, Request)
    assert req.call_id == "3848276298220188511@df7jal23ls0d.invalid"
    assert req.content_type == "application/sdp" and req.body == b"v=0\r\no=- 1 1\r\n"
    assert req.header("X-Callgate-Call-Id") == "call_00112233445566778899aabbccddeeff"


def test_parses_a_response() -> None:
    res = message.parse(RESPONSE)
    assert isinstance(res, message.Response)
    assert (res.status, res.cseq, res.method, res.call_id) == (200, 5, "BYE", "x")


def test_response_echoes_the_request_verbatim() -> None:
    req = message.parse(REGISTER)
    assert isinstance(req, Request)
    out = message.response(req, 200, to_tag="abc", headers=[("Contact", "<sip:x@y.invalid>;expires=5")])
    parsed = sipmessage.Message.parse(out)
    assert isinstance(parsed, sipmessage.Response)
    assert parsed.headers["To"] == "<sip:u0011223344556677@example.com>;tag=abc"
    assert parsed.headers["From"] == req.headers["From"]
    assert parsed.headers["Via"] == req.headers["Via"]
    assert parsed.content_length == 0


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 5"), 400),
        (REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 INVITE"), 400),
        (REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: 99999999999 REGISTER"), 400),
        (REGISTER.replace(b";branch=z9hG4bKnashds7", b""), 400),
        (REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards: many"), 400),
        (REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\n folded"), 400),
        (REGISTER.replace(b"sip:example.com SIP/2.0", b"http://example.com SIP/2.0"), 416),
        (REGISTER.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), None),  # not SIP 2.0: nothing to say
        (REGISTER.replace(b"REGISTER sip", b"REG{STER sip"), 400),
        (REGISTER + b"x" * 70_000, 513),
    ],
)
def test_malformed_requests_get_the_right_answer(data: bytes, status: int | None) -> None:
    with pytest.raises(SipParseError) as refused:
        message.parse(data)
    reply = refused.value.reply
    if status is None:
        assert reply is None
        return
    assert reply is not None
    parsed = sipmessage.Message.parse(reply)
    assert isinstance(parsed, sipmessage.Response) and parsed.code == status
    assert parsed.call_id == "1j9FpLxk3uxtm8tn@example.com"


def test_missing_call_id_cannot_be_answered() -> None:
    data = REGISTER.replace(b"Call-ID: 1j9FpLxk3uxtm8tn@example.com\r\n", b"")
    with pytest.raises(SipParseError) as refused:
        message.parse(data)
    assert refused.value.reply is None  # a response without Call-ID would be malformed itself


def test_ack_and_responses_are_never_answered() -> None:
    ack = INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"2 INVITE", b"2 ACK").replace(b"l: 14", b"l: 99")
    with pytest.raises(SipParseError) as refused:
        message.parse(ack)
    assert refused.value.reply is None
    with pytest.raises(SipParseError) as refused:
        message.parse(RESPONSE.replace(b"CSeq: 5 BYE", b"CSeq: five"))
    assert refused.value.reply is None


def _check(data: bytes) -> None:
    """The parser's contract: a result or a SipParseError whose reply (if any) is a valid 4xx/5xx."""
    try:
        parsed = message.parse(data)
    except SipParseError as exc:
        if exc.reply is not None:
            reply = sipmessage.Message.parse(exc.reply)
            assert isinstance(reply, sipmessage.Response) and 400 <= reply.code < 600
            assert reply.via and reply.cseq and reply.call_id and reply.from_address and reply.to_address
        return
    if isinstance(parsed, Request):
        reply = sipmessage.Message.parse(message.response(parsed, 200, to_tag="t"))
        assert isinstance(reply, sipmessage.Response) and reply.call_id == parsed.call_id


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
@example(b"\r\n\r\n")
@example(b"INVITE  SIP/2.0\r\n\r\n")
def test_fuzz_random_bytes(data: bytes) -> None:
    _check(data)


_LINES = st.sampled_from(
    REGISTER.split(b"\r\n\r\n")[0].split(b"\r\n") + INVITE.split(b"\r\n\r\n")[0].split(b"\r\n")
)
_NOISE = (
    st.binary(max_size=40)
    | st.text(max_size=40).map(str.encode)
    | st.sampled_from(
        [
            b"",
            b":",
            b" ",
            b";",
            b",",
            b"<",
            b">",
            b'"',
            b"\\",
            b"\x00",
            b"\xff",
            b"%",
            b"tag=",
            b"sip:",
            b"\r",
            b"\n",
        ]
    )
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real message with lines dropped, repeated, spliced or corrupted: closer to what breaks parsers."""
    base = draw(st.sampled_from([REGISTER, INVITE, RESPONSE]))
    head, _, body = base.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "insert", "corrupt", "splice"]))
        if action == "drop" and len(lines) > 1:
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "insert":
            lines.insert(i, draw(_LINES))
        elif action == "corrupt":
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut] + draw(_NOISE) + lines[i][cut + draw(st.integers(0, 5)) :]
        else:
            lines[i] = lines[i] + draw(_NOISE) + draw(_LINES)
    return b"\r\n".join(lines) + b"\r\n\r\n" + draw(st.sampled_from([body, b"", body + b"x", draw(_NOISE)]))


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_messages(data: bytes) -> None:
    _check(data)
