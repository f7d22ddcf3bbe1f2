"""LiveKit-shaped participant tokens: the OneInbox dialect's ``participant_token``.

A token is a LiveKit access token — HS256, ``iss`` = the API key, ``sub`` = the participant identity,
``nbf``/``exp``, ``video: {room, roomJoin, canPublish, canSubscribe, canPublishData}`` — that LiveKit's own
``TokenVerifier`` accepts with the key pair :func:`credentials` gives. It also carries a ``jti`` and a
``callgate`` claim (call, team, transport), which LiveKit ignores, so that callgate redeems it like any
call token: bound to one call and transport, before the join deadline (``exp``), once (the token ledger).

The secret is derived from callgate's signing key, so no other setting is needed, and a native call
token can never pass as a participant token or the other way round.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

import jwt

from callgate.auth.tokens import CallToken, TokenLedger
from callgate.errors import InvalidToken, TokenExpired, TokenMismatch, TokenReused

API_KEY = "callgate"
ALGORITHM = "HS256"
CLAIM = "callgate"


def credentials(signing_key: str) -> tuple[str, str]:
    """The LiveKit ``(api_key, api_secret)`` pair participant tokens are signed with."""
    secret = hmac.new(signing_key.encode(), b"callgate:livekit-participant-token", hashlib.sha256).hexdigest()
    return API_KEY, secret


def room_name(call_id: str) -> str:
    """The room of a web call: ``web-`` and the call id's random part (``call_3f9c…`` → ``web-3f9c…``)."""
    return f"web-{call_id.partition('_')[2] or call_id}"


def issue(
    *, signing_key: str, call_id: str, team_id: str, transport: str, now: datetime, expires_at: datetime
) -> str:
    api_key, secret = credentials(signing_key)
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": f"caller-{call_id.partition('_')[2][:12] or call_id}",
        "name": "caller",
        "nbf": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": secrets.token_hex(16),
        "video": {
            "room": room_name(call_id),
            "roomJoin": True,
            "canPublish": True,
            "canSubscribe": True,
            "canPublishData": True,
        },
        CLAIM: {"call": call_id, "team": team_id, "trp": transport},
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode(token: str, *, signing_key: str, now: datetime) -> CallToken:
    """Check the signature, issuer, room grant and expiry; no single-use check yet."""
    api_key, secret = credentials(signing_key)
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=api_key,
            # Time is judged below by the injected clock, not by PyJWT's reading of the system clock.
            options={"require": ["exp", "jti", "iss"], "verify_exp": False, "verify_nbf": False},
        )
        binding, video = claims[CLAIM], claims["video"]
        parsed = CallToken(
            call_id=str(binding["call"]),
            team_id=str(binding["team"]),
            transport=str(binding["trp"]),
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), now.tzinfo),
        )
        joins = video.get("roomJoin") is True and video.get("room") == room_name(parsed.call_id)
    except (jwt.PyJWTError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidToken("the participant token is not valid") from exc
    if not joins:
        raise TokenMismatch("the participant token does not grant joining this call's room")
    if parsed.expires_at <= now:
        raise TokenExpired("the participant token has expired (join deadline passed)")
    return parsed


async def redeem(
    token: str, *, signing_key: str, now: datetime, transport: str, ledger: TokenLedger
) -> CallToken:
    """Verify ``token`` for joining over ``transport`` and consume it; returns the call it is bound to."""
    parsed = decode(token, signing_key=signing_key, now=now)
    if parsed.transport != transport:
        raise TokenMismatch("the participant token is bound to another transport")
    if not await ledger.consume(parsed):
        raise TokenReused("the participant token has already been used")
    return parsed
