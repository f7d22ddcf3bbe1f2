"""Fuzzing what a client can send on the real-time paths: RTVI messages, SIP messages, SDP offers.

Each parser has one documented way to say no (``rtvi.ProtocolError``, ``SipParseError``,
``OfferRejected``); anything else escaping it would crash a session or a connection. Runs are
derandomized (the same examples every run) and sized to stay under ~20 s each here; set
``CALLGATE_FUZZ_SCALE`` (e.g. 20) for a longer run. The results of long runs are in RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callgate.realtime import rtvi
from callgate.realtime.media.offer import Offer, OfferRejected, check_offer
from callgate.realtime.sip import message
from callgate.realtime.sip.message import Request, Response, SipParseError
from tests.realtime.sip.test_message import INVITE, REGISTER, RESPONSE, mutated
from tests.realtime.sip_ws.test_limits import options

SCALE = float(os.environ.get("CALLGATE_FUZZ_SCALE", "1"))
SLOWEST_S = 0.5
"""No single input may take longer than this to accept or refuse (inputs are at most ~64 KB)."""


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=int(examples * SCALE),
        derandomize=True,
        deadline=None,  # time is bounded explicitly, generously, so a loaded machine does not flake
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


def assert_fast(run: Callable[[], None]) -> None:
    """``run`` finishes within SLOWEST_S in one of three tries: an input that is slow to handle is slow
    every time, while a pause of this shared machine (another process, a GC) does not repeat."""
    took = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        took.append(time.perf_counter() - start)
        if took[-1] < SLOWEST_S:
            return
    pytest.fail(f"took {min(took):.2f} s at best (bound {SLOWEST_S} s)")


# ------------------------------------------------------------------------------------------- RTVI


def check_rtvi(raw: str | bytes) -> None:
    def run() -> None:
        try:
            msg = rtvi.parse(raw)
        except rtvi.ProtocolError:
            return
        assert isinstance(msg.type, str) and isinstance(msg.data, dict)
        json.dumps(msg.data, ensure_ascii=False).encode()  # storable as UTF-8 text
        assert msg.id is None or isinstance(msg.id, str)

    assert_fast(run)


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
)
_DIGITS = st.text("0123456789", min_size=1, max_size=6000)


@st.composite
def hostile_json(draw: st.DrawFn) -> str:
    """RTVI-shaped JSON with hostile parts: deep nesting, huge numbers, wrong types, odd strings."""
    obj: dict[str, object] = {
        "label": "rtvi-ai",
        "type": draw(st.sampled_from(["client-ready", "send-text"])),
    }
    for key in ("label", "type", "id", "data"):
        if draw(st.booleans()):
            obj[key] = draw(_JSON)
    text = json.dumps(obj)
    depth = draw(st.sampled_from([0, 1, 31, 32, 33, 100, 5000]))
    if depth:
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        text = text[:-1] + ', "deep": ' + opener * depth + "1" + closer * depth + "}"
    if draw(st.booleans()):
        text = (
            text[:-1]
            + ', "n": '
            + draw(_DIGITS)
            + draw(st.sampled_from(["", ".5", "e999999", "e-999"]))
            + "}"
        )
    if draw(st.booleans()):  # cut it anywhere: unterminated strings, dangling escapes
        text = text[: draw(st.integers(0, len(text)))]
    return text


@fuzz(3000)
@given(st.text(max_size=2000) | st.binary(max_size=2000))
def test_rtvi_arbitrary_text_and_bytes(raw: str | bytes) -> None:
    check_rtvi(raw)


@fuzz(1500)
@given(hostile_json())
def test_rtvi_hostile_json(raw: str) -> None:
    check_rtvi(raw)


@fuzz(300)
@given(st.text(alphabet='[]{}"\\:,1 a', max_size=rtvi.MAX_TEXT_BYTES))
def test_rtvi_bracket_and_escape_soup(raw: str) -> None:
    check_rtvi('{"label":"rtvi-ai","type":"x","data":{"a":' + raw + "}}")


# ------------------------------------------------------------------------------------------- SIP


def check_sip(data: bytes) -> None:
    def run() -> None:
        try:
            parsed = message.parse(data)
        except SipParseError as exc:
            assert exc.reply is None or exc.reply.startswith((b"SIP/2.0 4", b"SIP/2.0 5"))
            return
        assert isinstance(parsed, Request | Response)
        if isinstance(parsed, Request):
            message.response(parsed, 200, to_tag="t")

    assert_fast(run)


@st.composite
def bloated(draw: st.DrawFn) -> bytes:
    """A mutated message with one of its lines (or junk) repeated up to the size limit."""
    base = draw(mutated())
    head, sep, body = base.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    line = draw(st.sampled_from([*lines, b": v"]) | st.binary(min_size=1, max_size=30))
    distinct = draw(st.booleans())  # distinct header names: what made sipmessage's lookups quadratic
    room = message.MAX_MESSAGE_BYTES - len(base)
    times = draw(st.integers(0, room // (len(line) + (7 if distinct else 2))))
    at = draw(st.integers(1, max(len(lines), 1)))
    lines[at:at] = [b"X%d%s" % (n, line) for n in range(times)] if distinct else [line] * times
    return b"\r\n".join(lines) + sep + body


@fuzz(2000)
@given(st.binary(max_size=4096))
def test_sip_arbitrary_bytes(data: bytes) -> None:
    check_sip(data)


@fuzz(3000)
@given(mutated())
def test_sip_mutated_messages(data: bytes) -> None:
    check_sip(data)


@fuzz(150)
@given(bloated())
@example(options(6_000))  # the probe's OPTIONS: 6,000 short distinct headers in 59 KB
@example(options(6_000).replace(b"X", b"Via"))  # the same repeated header: one long value list
def test_sip_bloated_messages_are_refused_in_bounded_time(data: bytes) -> None:
    check_sip(data)


@pytest.mark.parametrize("base", [REGISTER, INVITE, RESPONSE])
def test_sip_seed_messages_parse(base: bytes) -> None:
    assert isinstance(message.parse(base), Request | Response)


# ------------------------------------------------------------------------------------------- SDP

OFFER = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:1 1 udp 2113937151 192.0.2.10 54400 typ host generation 0\r\n"
    "a=ice-ufrag:Xx1y\r\na=ice-pwd:abcdefghijabcdefghij1234\r\na=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 "
    + ":".join(["AB"] * 32)
    + "\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:110 telephone-event/48000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\na=ssrc:1 cname:x\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:Xx1y\r\na=ice-pwd:abcdefghijabcdefghij1234\r\na=fingerprint:sha-256 "
    + ":".join(["AB"] * 32)
    + "\r\na=setup:actpass\r\na=mid:1\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
)
_OFFER_LINES = OFFER.split("\r\n")


def check_sdp(sdp: str) -> None:
    def run() -> None:
        try:
            offer = check_offer(sdp)
        except OfferRejected:
            return
        assert isinstance(offer, Offer) and offer.codec.lower() in ("opus", "g722", "pcmu", "pcma")

    assert_fast(run)


@st.composite
def mutated_offer(draw: st.DrawFn) -> str:
    lines = list(_OFFER_LINES)
    noise = st.text(max_size=20) | st.sampled_from(
        ["", "=", ":", " ", "/", "a=", "m=", "9999999999", "-1", "\x00"]
    )
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "corrupt", "insert"]))
        if action == "drop" and len(lines) > 1:
            del lines[i]
        elif action == "dup":
            lines[i:i] = [lines[i]] * draw(st.integers(1, 50))
        elif action == "corrupt":
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut] + draw(noise) + lines[i][cut + draw(st.integers(0, 4)) :]
        else:
            lines.insert(i, draw(st.sampled_from(_OFFER_LINES)) + draw(noise))
    return "\r\n".join(lines)


def test_sdp_seed_offer_is_accepted() -> None:
    assert check_offer(OFFER) == Offer(codec="opus", has_channel=True)


@fuzz(1000)
@given(st.text(max_size=2000))
def test_sdp_arbitrary_text(sdp: str) -> None:
    check_sdp(sdp)


@fuzz(1500)
@given(mutated_offer())
def test_sdp_mutated_offers(sdp: str) -> None:
    check_sdp(sdp)
