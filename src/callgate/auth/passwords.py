"""Dashboard passwords: Argon2id (RFC 9106) through ``argon2-cffi``, and sign-in session tokens.

Hashing costs tens of milliseconds and 64 MiB on purpose; callers run it off the event loop
(:func:`hash_password_async`, :func:`verify_password_async`).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from callgate.errors import ValidationFailed

MIN_LENGTH = 10
MAX_LENGTH = 200

_HASHER = PasswordHasher(type=Type.ID)
# Verified when the account does not exist, so that a wrong address costs as long as a wrong password.
_DUMMY = _HASHER.hash("callgate-no-such-user")


def check_strength(password: str, *, field: str = "password") -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise ValidationFailed(
            f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters",
            errors=[
                {
                    "field": field,
                    "message": f"use {MIN_LENGTH} to {MAX_LENGTH} characters",
                    "type": "value_error",
                }
            ],
        )


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing or malformed hash never matches."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(stored_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, stored_hash, password)


def new_token() -> str:
    """A random token for a cookie or a link (256 bits)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored of a token: its SHA-256 (tokens are random, so no salt or stretching is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()
