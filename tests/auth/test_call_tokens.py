"""Call tokens: signed, short-lived, bound to one call and one transport, and single use on every
ledger (the database on both engines, Redis) — also across two nodes sharing that ledger."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from redis.asyncio import Redis

from callgate.auth import tokens
from callgate.auth.ledger import DatabaseLedger, RedisLedger
from callgate.auth.tokens import TokenLedger
from callgate.clock import SystemClock
from callgate.errors import InvalidToken, TokenExpired, TokenMismatch, TokenReused
from callgate.store.db import Database
from callgate.store.models import UsedToken
from tests.support.services import PostgresServer, RedisServer

KEY = "signing-key-" + "k" * 60
# Tokens are issued "now": PyJWT checks `iat` against the system clock (see test_clock_skew_between_nodes).
NOW = datetime.now(UTC).replace(microsecond=0)


def issue(*, call_id: str = "call_1", transport: str = "websocket", ttl_s: int = 60, key: str = KEY) -> str:
    token, _ = tokens.issue(
        key=key, call_id=call_id, team_id="team_1", transport=transport, now=NOW, ttl_s=ttl_s
    )
    return token


# --- signature, claims, expiry, binding (no ledger involved) ---------------------------------------


def test_round_trip() -> None:
    token, claims = tokens.issue(
        key=KEY, call_id="call_1", team_id="team_1", transport="webrtc", now=NOW, ttl_s=30
    )
    decoded = tokens.decode(token, key=KEY, now=NOW)
    assert decoded.call_id == "call_1"
    assert decoded.team_id == "team_1"
    assert decoded.transport == "webrtc"
    assert decoded.jti == claims.jti
    assert decoded.expires_at == claims.expires_at == NOW + timedelta(seconds=30)


def test_a_token_is_the_jwt_pyjwt_would_sign() -> None:
    # issue() signs HS256 itself (PyJWT's key checks cost more than the signature): the same bytes.
    token = issue(transport="sip")
    claims = jwt.decode(
        token, KEY, algorithms=["HS256"], audience=tokens.AUDIENCE, options={"verify_exp": False}
    )
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert token == jwt.encode(claims, KEY, algorithm="HS256")
    with pytest.raises(InvalidToken):
        tokens.decode(issue(key=KEY + "2"), key=KEY, now=NOW)


def test_each_token_has_its_own_id() -> None:
    ids = {tokens.decode(issue(), key=KEY, now=NOW).jti for _ in range(50)}
    assert len(ids) == 50


def test_expiry() -> None:
    token = issue(ttl_s=60)
    tokens.decode(token, key=KEY, now=NOW + timedelta(seconds=59))
    for late in (timedelta(seconds=60), timedelta(seconds=61), timedelta(days=1)):
        with pytest.raises(TokenExpired):
            tokens.decode(token, key=KEY, now=NOW + late)


def test_clock_skew_between_nodes() -> None:
    """A token is valid on any node: one issued by a node whose clock runs 2 s ahead is accepted."""
    real_now = datetime.now(UTC)
    token, _ = tokens.issue(
        key=KEY,
        call_id="call_1",
        team_id="team_1",
        transport="websocket",
        now=real_now + timedelta(seconds=2),
        ttl_s=60,
    )
    assert tokens.decode(token, key=KEY, now=real_now).call_id == "call_1"


def test_time_is_judged_by_the_given_clock() -> None:
    """Virtual time (an injected clock) works end to end: issue and decode in 2030."""
    later = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    token, _ = tokens.issue(
        key=KEY, call_id="call_1", team_id="team_1", transport="websocket", now=later, ttl_s=60
    )
    assert tokens.decode(token, key=KEY, now=later + timedelta(seconds=1)).call_id == "call_1"
    with pytest.raises(TokenExpired):
        tokens.decode(token, key=KEY, now=later + timedelta(seconds=60))


def _segments(token: str) -> tuple[dict[str, object], dict[str, object], str]:
    header, payload, signature = token.split(".")

    def load(segment: str) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        return loaded

    return load(header), load(payload), signature


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _forgeries() -> dict[str, str]:
    token = issue()
    header, payload, signature = _segments(token)
    claims = {**payload, "sub": "call_other"}
    unsigned = {"alg": "none", "typ": "JWT"}
    return {
        "another key": issue(key="another-signing-key-" + "z" * 40),
        "payload changed, signature kept": f"{_b64(header)}.{_b64(claims)}.{signature}",
        "signature flipped": token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        "alg none": f"{_b64(unsigned)}.{_b64(claims)}.",
        "HS512 with the right key": jwt.encode(payload, KEY, algorithm="HS512"),
        "another audience": jwt.encode({**payload, "aud": "someone-else"}, KEY, algorithm="HS256"),
        "no jti": jwt.encode({k: v for k, v in payload.items() if k != "jti"}, KEY, algorithm="HS256"),
        "no team claim": jwt.encode(
            {k: v for k, v in payload.items() if k != "team"}, KEY, algorithm="HS256"
        ),
        "garbage": "not-a-token",
        "empty": "",
    }


@pytest.mark.parametrize("name", list(_forgeries()))
def test_forged_or_tampered_tokens_are_invalid(name: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        tokens.decode(_forgeries()[name], key=KEY, now=NOW)
    assert type(caught.value) is InvalidToken  # not "expired" or "reused": simply not ours


# --- single use on every ledger ----------------------------------------------------------------------

LedgerPair = tuple[TokenLedger, TokenLedger]
_databases = itertools.count()


async def _database_ledgers(url: str) -> AsyncIterator[LedgerPair]:
    nodes = [Database(url), Database(url)]
    for db in nodes:
        await db.start()
    try:
        yield DatabaseLedger(nodes[0], SystemClock()), DatabaseLedger(nodes[1], SystemClock())
    finally:
        for db in nodes:
            await db.close()


async def _redis_ledgers(url: str) -> AsyncIterator[LedgerPair]:
    clients = [Redis.from_url(url), Redis.from_url(url)]
    try:
        yield RedisLedger(clients[0], SystemClock()), RedisLedger(clients[1], SystemClock())
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh store: a migrated database on either engine, or the test Redis."""
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        yield redis.url
    elif request.param == "sqlite":
        path = tmp_path / "ledger.db"
        path.write_bytes(request.getfixturevalue("sqlite_template").read_bytes())
        yield f"sqlite+aiosqlite:///{path}"
    else:
        pg: PostgresServer = request.getfixturevalue("pg_server")
        name = f"ledger_{next(_databases)}"
        yield pg.create_database(name, template=request.getfixturevalue("pg_template"))
        pg.drop_database(name)


@pytest.fixture
async def ledgers(ledger_store: str) -> AsyncIterator[LedgerPair]:
    """Two ledgers on one store, as two callgate nodes would have."""
    pairs = _redis_ledgers if ledger_store.startswith("redis") else _database_ledgers
    async for pair in pairs(ledger_store):
        yield pair


def live_token(*, call_id: str = "call_1", transport: str = "websocket") -> str:
    token, _ = tokens.issue(
        key=KEY, call_id=call_id, team_id="team_1", transport=transport, now=datetime.now(UTC), ttl_s=60
    )
    return token


Redeem = Callable[..., Awaitable[tokens.CallToken]]


def redeemer(ledger: TokenLedger) -> Redeem:
    async def redeem(
        token: str, *, call_id: str = "call_1", transport: str = "websocket"
    ) -> tokens.CallToken:
        return await tokens.redeem(
            token, key=KEY, now=datetime.now(UTC), call_id=call_id, transport=transport, ledger=ledger
        )

    return redeem


async def test_single_use(ledgers: LedgerPair) -> None:
    redeem = redeemer(ledgers[0])
    token = live_token()
    assert (await redeem(token)).call_id == "call_1"
    with pytest.raises(TokenReused):
        await redeem(token)
    # Another token for the same call is a new token.
    await redeem(live_token())


async def test_single_use_across_nodes(ledgers: LedgerPair) -> None:
    token = live_token()
    await redeemer(ledgers[0])(token)
    with pytest.raises(TokenReused):
        await redeemer(ledgers[1])(token)


async def test_single_use_under_concurrent_redeems(ledgers: LedgerPair) -> None:
    token = live_token()
    attempts = [redeemer(ledgers[i % 2])(token) for i in range(10)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1, results
    assert all(isinstance(r, TokenReused) for r in results if isinstance(r, BaseException)), results


async def test_binding_to_call_and_transport(ledgers: LedgerPair) -> None:
    redeem = redeemer(ledgers[0])
    token = live_token(call_id="call_1", transport="websocket")
    with pytest.raises(TokenMismatch):
        await redeem(token, call_id="call_2")
    with pytest.raises(TokenMismatch):
        await redeem(token, transport="webrtc")
    # A refused attempt does not use the token up: its rightful owner still joins.
    await redeem(token)


async def test_expired_and_forged_tokens_are_refused_before_the_ledger(ledgers: LedgerPair) -> None:
    expired, _ = tokens.issue(
        key=KEY,
        call_id="call_1",
        team_id="team_1",
        transport="websocket",
        now=datetime.now(UTC) - timedelta(seconds=120),
        ttl_s=60,
    )
    with pytest.raises(TokenExpired):
        await redeemer(ledgers[0])(expired)
    with pytest.raises(InvalidToken):
        await redeemer(ledgers[0])(_forgeries()["payload changed, signature kept"], call_id="call_other")


async def test_redis_ledger_entries_expire(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url)
    try:
        token = live_token()
        parsed = await redeemer(RedisLedger(client, SystemClock()))(token)
        ttl = await client.ttl(f"callgate:used-token:{parsed.jti}")
        assert 60 <= ttl <= 121  # the token's remaining life plus a margin, never forever
    finally:
        await client.aclose()


async def test_database_ledger_purges_long_expired_tokens(database_url: str) -> None:
    db = Database(database_url)
    await db.start()
    try:
        ledger = DatabaseLedger(db, SystemClock())
        now = datetime.now(UTC)
        old = tokens.CallToken("call_1", "team_1", "websocket", "old", now - timedelta(hours=2))
        fresh = tokens.CallToken("call_1", "team_1", "websocket", "fresh", now + timedelta(seconds=60))
        assert await ledger.consume(old) and await ledger.consume(fresh)
        await ledger.purge(before=now)
        async with db.read() as s:
            assert await s.get(UsedToken, "old") is None
            assert await s.get(UsedToken, "fresh") is not None
    finally:
        await db.close()
