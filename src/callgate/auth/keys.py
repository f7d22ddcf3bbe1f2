"""API keys: generation, parsing and verification.

A key reads ``cg_<type>_<lookup><secret>``: ``lookup`` (12 chars) finds the row, ``secret`` (32 chars) is
checked against its SHA-256 in constant time. Only the lookup id and the hash are stored; the key is
shown once. Keys are 256-bit random, so a fast hash is the right tool (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from enum import StrEnum

_ALPHABET = string.ascii_letters + string.digits
LOOKUP_LEN = 12
SECRET_LEN = 32


class KeyType(StrEnum):
    SECRET = "secret"  # noqa: S105 - a key type, not a password
    PUBLISHABLE = "publishable"
    SHARED = "shared"

    @property
    def prefix(self) -> str:
        return {"secret": "cg_sk_", "publishable": "cg_pk_", "shared": "cg_sh_"}[self.value]


DEFAULT_RATE_LIMITS = {
    KeyType.SECRET: "100/second",
    KeyType.PUBLISHABLE: "20/second",
    KeyType.SHARED: "10/second",
}


@dataclass(frozen=True, slots=True)
class NewKey:
    plaintext: str
    lookup_id: str
    secret_hash: str


@dataclass(frozen=True, slots=True)
class ParsedKey:
    type: KeyType
    lookup_id: str
    secret: str


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate(key_type: KeyType) -> NewKey:
    lookup, secret = _random(LOOKUP_LEN), _random(SECRET_LEN)
    return NewKey(
        plaintext=f"{key_type.prefix}{lookup}{secret}", lookup_id=lookup, secret_hash=hash_secret(secret)
    )


def parse(raw: str) -> ParsedKey | None:
    """Split a presented key; None if it is not shaped like one of ours."""
    for key_type in KeyType:
        if raw.startswith(key_type.prefix):
            body = raw[len(key_type.prefix) :]
            if len(body) != LOOKUP_LEN + SECRET_LEN or not body.isalnum() or not body.isascii():
                return None
            return ParsedKey(type=key_type, lookup_id=body[:LOOKUP_LEN], secret=body[LOOKUP_LEN:])
    return None


def verify(parsed: ParsedKey, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(parsed.secret), secret_hash)


def normalize_origin(origin: str) -> str:
    """``https://Example.com:443/`` → ``https://example.com``, for comparing Origin headers."""
    from urllib.parse import urlsplit

    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.hostname:
        raise ValueError(f"not an origin: {origin!r}")
    host = parts.hostname.lower()
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{parts.scheme.lower()}://{host}{port}"
