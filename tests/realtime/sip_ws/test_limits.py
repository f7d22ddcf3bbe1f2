"""Size and header-count limits, and parsing in linear time: a message with thousands of headers is
refused at once (issue 11 #3 took ~2 s per 59 KB OPTIONS and stalled the event loop)."""

from __future__ import annotations

import gc
import logging
import time

import pytest
import sipmessage
from hypothesis import given, settings
from hypothesis import strategies as st

from callgate.realtime.sip import message
from callgate.realtime.sip.message import IndexedHeaders, Request, SipParseError
from tests.realtime.sip_ws.conftest import SipCall
from tests.support.live import LiveServer
from tests.support.sip_client import SipClient, branch


def options(extra_headers: int, *, domain: str = "example.com", pad: int = 0) -> bytes:
    """An unauthenticated OPTIONS with ``extra_headers`` short distinct headers (9 mandatory lines)."""
    extra = b"".join(b"X%d: v\r\n" % i for i in range(extra_headers))
    return (
        f"OPTIONS sip:{domain} SIP/2.0\r\nVia: SIP/2.0/WS a.invalid;branch={branch()}\r\n"
        f"Max-Forwards: 70\r\nTo: <sip:a@{domain}>\r\nFrom: <sip:b@{domain}>;tag=1\r\n"
        f"Call-ID: {branch()}\r\nCSeq: 1 OPTIONS\r\n".encode()
        + extra
        + b"X-Pad: "
        + b"p" * pad
        + b"\r\nContent-Length: 0\r\n\r\n"
    )


def test_header_lines_up_to_the_limit_parse() -> None:
    assert isinstance(message.parse(options(message.MAX_HEADERS - 8)), Request)


def test_too_many_headers_get_400_with_a_warning() -> None:
    with pytest.raises(SipParseError) as refused:
        message.parse(options(message.MAX_HEADERS - 7))
    assert refused.value.reason == "more than 128 headers"
    assert refused.value.reply is not None
    reply = sipmessage.Message.parse(refused.value.reply)
    assert isinstance(reply, sipmessage.Response) and reply.code == 400
    assert reply.headers.get("Warning") == '399 callgate "more than 128 headers"'


def test_a_message_over_the_size_limit_gets_513() -> None:
    with pytest.raises(SipParseError) as refused:
        message.parse(options(10, pad=message.MAX_MESSAGE_BYTES))
    assert refused.value.reply is not None
    reply = sipmessage.Message.parse(refused.value.reply)
    assert isinstance(reply, sipmessage.Response) and reply.code == 513


def _parse_seconds(*messages: bytes) -> list[float]:
    """Each message's best parse time of 7, measured in turns and with the collector off, so that a
    pause of the machine or of the GC lands in one attempt, not in the figure."""
    best = [float("inf")] * len(messages)
    gc.disable()
    try:
        for _ in range(7):
            for i, data in enumerate(messages):
                start = time.perf_counter()
                message.parse(data)
                best[i] = min(best[i], time.perf_counter() - start)
    finally:
        gc.enable()
    return best


def test_parsing_is_linear_in_the_header_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # The limits are lifted to see the parser's own growth: 20x the headers must cost about 20x, not
    # 400x (the bound leaves 4x for a noisy machine and still catches quadratic growth).
    monkeypatch.setattr(message, "MAX_HEADERS", 100_000)
    monkeypatch.setattr(message, "MAX_MESSAGE_BYTES", 10_000_000)
    small, large = _parse_seconds(options(1_000), options(20_000))
    assert large / small < 80, (small, large)


_NAMES = st.sampled_from(["Via", "via", "VIA", "Contact", "contact", "X-A", "x-a", "Route"])
_OPS = st.lists(
    st.tuples(st.sampled_from(["add", "set", "setlist", "remove"]), _NAMES, st.text("ab", max_size=2)),
    max_size=30,
)


@settings(max_examples=300, derandomize=True)
@given(_OPS)
def test_indexed_headers_behave_like_sipmessage_headers(ops: list[tuple[str, str, str]]) -> None:
    ours, theirs = IndexedHeaders(), sipmessage.Headers()
    for op, name, value in ops:
        for headers in (ours, theirs):
            if op == "add":
                headers.add(name, value)
            elif op == "set":
                headers.set(name, value)
            elif op == "setlist":
                headers.setlist(name, [value, value + "2"])
            else:
                headers.remove(name)
    assert ours.keys() == theirs.keys() and str(ours) == str(theirs)
    for name in ("Via", "CONTACT", "x-a", "Route", "Nope"):
        assert ours.get(name, "d") == theirs.get(name, "d")
        assert ours.getlist(name) == theirs.getlist(name)


async def _answer_seconds(client: SipClient, frame: bytes) -> float:
    """Time from sending ``frame`` to its answer arriving (the least of five tries)."""
    best = float("inf")
    for _ in range(5):
        seen = len(client.inbox.responses)
        start = time.perf_counter()
        await client.send_raw(frame)
        await client.wait(lambda: len(client.inbox.responses) > seen)  # noqa: B023
        best = min(best, time.perf_counter() - start)
    return best


async def test_thousands_of_headers_are_refused_at_once_over_the_socket(
    live: LiveServer, sip_call: SipCall
) -> None:
    domain = sip_call.creds.domain
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        small = await _answer_seconds(client, options(20, domain=domain))
        assert client.inbox.responses[-1].code == 200
        huge = options(6_000, domain=domain)
        assert 50_000 < len(huge) < message.MAX_MESSAGE_BYTES
        large = await _answer_seconds(client, huge)
        refused = client.inbox.responses[-1]
        assert (
            refused.code == 400 and refused.headers.get("Warning") == '399 callgate "more than 128 headers"'
        )
        await client.send_raw(options(10, domain=domain, pad=70_000))
        await client.wait(lambda: client.inbox.responses[-1].code == 513)
        # ~60x the bytes; linear work stays well under that, the quadratic parser took ~1000x.
        assert large / small < 30, (small, large)
        assert (await client.request("OPTIONS", f"sip:{domain}", authenticate=False)).code == 200
        assert client.ws.close_code is None


async def test_malformed_messages_are_logged_once_per_connection(
    live: LiveServer, sip_call: SipCall, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="callgate.realtime.sip_ws.connection")
    domain = sip_call.creds.domain
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        for _ in range(5):
            await client.send_raw(options(message.MAX_HEADERS, domain=domain))
        await client.wait(lambda: len(client.inbox.responses) == 5)
    malformed = [r for r in caplog.records if r.getMessage().startswith("malformed SIP message")]
    assert [r.levelno for r in malformed] == [logging.INFO] + [logging.DEBUG] * 4
    assert all(r.exc_info is None for r in malformed)
