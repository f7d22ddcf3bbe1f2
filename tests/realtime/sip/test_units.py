"""The SIP package's pure parts: digest (RFC vectors), nonces, Contact splitting, SDP re-answers, DTMF."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from callgate.clock import SystemClock
from callgate.realtime.digits import DigitCollector
from callgate.realtime.sip import digest
from callgate.realtime.sip.digest import NonceBook, NonceState, Verdict
from callgate.realtime.sip.info_keys import DtmfError, parse_info
from callgate.realtime.sip_ws import hold as sdp
from callgate.realtime.sip_ws.registrar import split_contacts


def _answer(**fields: str) -> str:
    return "Digest " + ", ".join(
        f'{k}="{v}"' if k not in ("nc", "qop", "algorithm") else f"{k}={v}" for k, v in fields.items()
    )


@pytest.mark.parametrize(
    ("algorithm", "realm", "nonce", "cnonce", "password", "response"),
    [
        # RFC 2617 §3.5
        (
            "MD5",
            "testrealm@host.com",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "0a4f113b",
            "Circle Of Life",
            "6629fae49393a05397450978507c4ef1",
        ),
        # RFC 7616 §3.9.1
        (
            "SHA-256",
            "http-auth@example.org",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            "Circle of Life",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ],
)
def test_digest_matches_the_rfc_vectors(
    algorithm: str, realm: str, nonce: str, cnonce: str, password: str, response: str
) -> None:
    creds = digest.parse_credentials(
        _answer(
            username="Mufasa",
            realm=realm,
            nonce=nonce,
            uri="/dir/index.html",
            qop="auth",
            nc="00000001",
            cnonce=cnonce,
            response=response,
            algorithm=algorithm,
        )
    )
    h = hashlib.md5 if algorithm == "MD5" else hashlib.sha256
    ha1 = h(f"Mufasa:{realm}:{password}".encode()).hexdigest()
    assert digest.expected_response(creds, ha1=ha1, method="GET") == response
    book = NonceBook(lambda: 0.0)
    book._nonces[nonce] = (0.0, 0)  # as if we had issued the RFC's nonce
    kwargs = {"method": "GET", "raw_uri": "/dir/index.html", "realm": realm, "nonces": book}
    assert digest.verify(creds, ha1={algorithm: ha1}, **kwargs) is Verdict.OK  # type: ignore[arg-type]
    assert digest.verify(creds, ha1={algorithm: ha1}, **kwargs) is Verdict.CHALLENGE  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="0", nc=00000001, cnonce="c"',
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="0", qop=auth, nc=1, cnonce="c"',
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="0", qop=auth, nc=0000000g, '
        'cnonce="c"',
        'Digest username="u", realm="r", nonce="n", uri="sip:x", qop=auth, nc=00000001, cnonce="c"',
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="0", qop=auth, nc=00000001, '
        'cnonce="c", algorithm=SHA-512-256',
        "Digest",
    ],
)
def test_unusable_answers_are_refused(header: str) -> None:
    with pytest.raises(digest.DigestError):
        digest.parse_credentials(header)


def test_challenges_put_sha256_first_and_md5_last() -> None:
    headers = digest.challenges("example.com", "abc", stale=True)
    assert [v for _, v in headers] == [
        'Digest realm="example.com", nonce="abc", algorithm=SHA-256, qop="auth", stale=true',
        'Digest realm="example.com", nonce="abc", algorithm=MD5, qop="auth", stale=true',
    ]


def test_nonces_expire_refuse_replays_and_are_bounded() -> None:
    now = [0.0]
    book = NonceBook(lambda: now[0], ttl_s=10, capacity=2)
    first = book.issue()
    assert book.use(first, 1) is NonceState.FRESH
    assert book.use(first, 1) is NonceState.REPLAYED
    assert book.use(first, 2) is NonceState.FRESH
    assert book.use("never-issued", 1) is NonceState.UNKNOWN
    now[0] = 11
    assert book.use(first, 3) is NonceState.STALE
    a, b, c = book.issue(), book.issue(), book.issue()
    assert book.use(a, 1) is NonceState.UNKNOWN  # evicted
    assert book.use(b, 1) is NonceState.FRESH and book.use(c, 1) is NonceState.FRESH


def test_contacts_split_outside_quotes_and_brackets() -> None:
    value = '"Doe, J" <sip:a@b.invalid;x=1,2>;expires=5, <sip:c@d.invalid>, sip:e@f'
    assert split_contacts(value) == [
        '"Doe, J" <sip:a@b.invalid;x=1,2>;expires=5',
        "<sip:c@d.invalid>",
        "sip:e@f",
    ]
    assert split_contacts("*") == ["*"]


OFFER = (
    "v=0\r\no=- 10 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:u1\r\na=ice-pwd:p1\r\na=sendrecv\r\n"
)
ANSWER = (
    "v=0\r\no=- 77 77 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:s1\r\na=ice-pwd:q1\r\n"
    "a=fingerprint:sha-256 BB\r\na=sendrecv\r\n"
)


def test_hold_offer_is_the_same_session_and_gets_a_recvonly_answer() -> None:
    held = OFFER.replace("a=sendrecv", "a=sendonly")
    assert sdp.same_session(OFFER, held) and sdp.direction(held) == "sendonly"
    answer = sdp.reanswer(ANSWER, offer_direction="sendonly", version=78)
    assert "a=recvonly" in answer and "o=- 77 78 IN IP4 0.0.0.0" in answer
    assert sdp.origin_version(answer) == 78
    assert sdp.reanswer(ANSWER, offer_direction="inactive", version=79).count("a=inactive") == 1


@pytest.mark.parametrize(
    "change",
    [
        ("a=ice-ufrag:u1", "a=ice-ufrag:u2"),
        ("a=fingerprint:sha-256 AA", "a=fingerprint:sha-256 CC"),
        ("a=sendrecv\r\n", "a=sendrecv\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"),
    ],
)
def test_offers_needing_new_media_are_not_the_same_session(change: tuple[str, str]) -> None:
    assert not sdp.same_session(OFFER, OFFER.replace(*change))


@pytest.mark.parametrize(
    ("content_type", "body", "key"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay", b"signal= #\nduration=100", "#"),
        ("application/dtmf-relay", b"Signal=a\r\n", "A"),
        ("application/dtmf", b"*", "*"),
    ],
)
def test_info_bodies_carry_a_key(content_type: str, body: bytes, key: str) -> None:
    assert parse_info(content_type, body) == key


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/dtmf-relay", b"Duration=160"),
        ("application/dtmf", b"55"),
        ("application/dtmf", b"\xff"),
        ("text/plain", b"5"),
    ],
)
def test_info_bodies_without_a_key_are_refused(content_type: str, body: bytes) -> None:
    with pytest.raises(DtmfError):
        parse_info(content_type, body)


async def test_keys_are_gathered_into_turns() -> None:
    turns: list[str] = []

    async def deliver(text: str) -> None:
        turns.append(text)

    keys = DigitCollector(deliver, clock=SystemClock(), inter_digit_s=0.2)
    for key in "12#":
        keys.press(key)
    await asyncio.sleep(0.01)
    assert turns == ["DTMF 12#"]  # '#' ends a sequence at once
    keys.press("4")
    keys.press("x")  # not a key: ignored
    await asyncio.sleep(0.1)
    keys.press("2")
    await asyncio.sleep(0.1)
    assert turns == ["DTMF 12#"]  # the timer restarts on each key
    await asyncio.sleep(0.2)
    assert turns == ["DTMF 12#", "DTMF 42"]
    keys.press("9")
    await keys.aclose()
    keys.press("8")
    await asyncio.sleep(0.3)
    assert turns == ["DTMF 12#", "DTMF 42"]  # pending keys are dropped when the call ends
