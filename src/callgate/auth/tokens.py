"""Call tokens: short-lived, single-use JWTs bound to one call and one transport.

The signature and claims are checked here; single use is enforced by a :class:`TokenLedger` — the
database (``used_token`` table) or Redis (``SET NX`` with expiry) when configured, so a token used on
one node is refused on every other node.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import jwt

from callgate.errors import InvalidToken, TokenExpired, TokenMismatch, TokenReused

AUDIENCE = "callgate:call"
ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class CallToken:
    call_id: str
    team_id: str
    transport: str
    jti: str
    expires_at: datetime


class TokenLedger(Protocol):
    async def consume(self, token: CallToken) -> bool:
        """Mark the token used; False if it already was."""
        ...


def issue(
    *, key: str, call_id: str, team_id: str, transport: str, now: datetime, ttl_s: int
) -> tuple[str, CallToken]:
    expires_at = now + timedelta(seconds=ttl_s)
    claims = CallToken(
        call_id=call_id,
        team_id=team_id,
        transport=transport,
        jti=secrets.token_hex(16),
        expires_at=expires_at,
    )
    encoded = _sign(
        {
            "aud": AUDIENCE,
            "sub": call_id,
            "team": team_id,
            "trp": transport,
            "jti": claims.jti,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        },
        key,
    )
    return encoded, claims


_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


@functools.lru_cache(maxsize=8)
def _mac(key: str) -> hmac.HMAC:
    return hmac.new(key.encode(), digestmod=hashlib.sha256)


def _sign(claims: dict[str, object], key: str) -> str:
    """An HS256 JWT, byte for byte what ``jwt.encode(claims, key, algorithm="HS256")`` gives (the same
    header and compact JSON); written out because PyJWT's checks of the key (is it a PEM or SSH key?)
    cost more than the signature, once per created call. Tokens are still read by PyJWT."""
    body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=")
    signing_input = _HEADER + b"." + body
    mac = _mac(key).copy()
    mac.update(signing_input)
    signature = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


def decode(token: str, *, key: str, now: datetime) -> CallToken:
    """Check signature, audience and expiry; no binding or single-use check yet."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            # Time is judged below by the injected clock, not by PyJWT's reading of the system clock.
            options={
                "require": ["exp", "sub", "jti", "aud"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken("the call token is not valid") from exc
    try:
        parsed = CallToken(
            call_id=str(claims["sub"]),
            team_id=str(claims["team"]),
            transport=str(claims["trp"]),
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), now.tzinfo),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("the call token is missing claims") from exc
    if parsed.expires_at <= now:
        raise TokenExpired("the call token has expired (join deadline passed)")
    return parsed


def verify(token: str, *, key: str, now: datetime, call_id: str, transport: str) -> CallToken:
    """Check ``token`` for joining ``call_id`` over ``transport`` without consuming it (a transport
    that must do work before the join checks first, so a refusal of that work spends nothing)."""
    parsed = decode(token, key=key, now=now)
    if parsed.call_id != call_id or parsed.transport != transport:
        raise TokenMismatch("the call token is bound to another call or transport")
    return parsed


async def redeem(
    token: str, *, key: str, now: datetime, call_id: str, transport: str, ledger: TokenLedger
) -> CallToken:
    """Verify ``token`` for joining ``call_id`` over ``transport`` and consume it."""
    parsed = verify(token, key=key, now=now, call_id=call_id, transport=transport)
    if not await ledger.consume(parsed):
        raise TokenReused("the call token has already been used")
    return parsed
