"""Digest authentication, server side (RFC 3261 §22 with RFC 8760: MD5 and SHA-256, ``qop=auth``).

A call stores only HA1 for each algorithm (:mod:`callgate.auth.sip`), which is all a verifier needs.

Nonces are issued per WebSocket connection and live :data:`NONCE_TTL_S`; each remembers the highest
nonce-count used with it, so a captured ``Authorization`` cannot be replayed, neither on the same
connection (the count must grow) nor on another (the nonce is unknown there). A correct answer to an
old or unknown nonce gets a new challenge with ``stale=true``, so the client retries without asking
its user again.

Challenge order: one ``WWW-Authenticate`` per algorithm, most preferred first (RFC 8760 §2.4): SHA-256,
then MD5. The order matters beyond the RFC: JsSIP 3.13 and SIP.js 0.21 keep only the *last*
``WWW-Authenticate`` of a response and give up unless it is MD5, so MD5 must come last. The passwords
are 192 random bits, one call each, so MD5's weakness (offline guessing of a captured exchange) buys an
attacker nothing here.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sipmessage

NONCE_TTL_S = 300.0
NONCE_CAPACITY = 32
CHALLENGE_ORDER = ("SHA-256", "MD5")


def _md5(data: str) -> str:
    return hashlib.md5(data.encode(), usedforsecurity=False).hexdigest()


def _sha256(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()


HASHES: dict[str, Callable[[str], str]] = {"MD5": _md5, "SHA-256": _sha256}


class DigestError(ValueError):
    """An ``Authorization`` header that is not a usable Digest answer."""


class Verdict(enum.Enum):
    OK = "ok"
    CHALLENGE = "challenge"
    """No, wrong or replayed credentials: challenge again."""
    STALE = "stale"
    """Right credentials, expired or unknown nonce: challenge with ``stale=true``."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str
    nc: int
    cnonce: str


def parse_credentials(value: str) -> Credentials:
    try:
        parsed = sipmessage.AuthCredentials.parse(value)
    except ValueError as exc:
        raise DigestError("the Authorization header is malformed") from exc
    params = parsed.parameters
    if parsed.scheme.lower() != "digest" or params is None:
        raise DigestError("only Digest authentication is supported")
    try:
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in HASHES:
            raise DigestError(f"unsupported algorithm {algorithm}")
        if params.get("qop", "").lower() != "auth":
            raise DigestError("qop=auth is required")
        nc = params["nc"]
        if len(nc) != 8:
            raise DigestError("nc must be 8 hex digits")
        return Credentials(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"].lower(),
            algorithm=algorithm,
            qop="auth",
            nc=int(nc, 16),
            cnonce=params["cnonce"],
        )
    except (KeyError, ValueError) as exc:
        if isinstance(exc, DigestError):
            raise
        raise DigestError("the Digest answer lacks a parameter") from exc


def expected_response(creds: Credentials, *, ha1: str, method: str) -> str:
    h = HASHES[creds.algorithm]
    ha2 = h(f"{method}:{creds.uri}")
    return h(f"{ha1}:{creds.nonce}:{creds.nc:08x}:{creds.cnonce}:{creds.qop}:{ha2}")


def challenges(realm: str, nonce: str, *, stale: bool = False) -> list[tuple[str, str]]:
    """``WWW-Authenticate`` headers, one per algorithm, in :data:`CHALLENGE_ORDER`."""
    suffix = ", stale=true" if stale else ""
    return [
        ("WWW-Authenticate", f'Digest realm="{realm}", nonce="{nonce}", algorithm={alg}, qop="auth"{suffix}')
        for alg in CHALLENGE_ORDER
    ]


class NonceState(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    UNKNOWN = "unknown"
    REPLAYED = "replayed"


class NonceBook:
    """The nonces one connection was given, oldest evicted beyond ``capacity``."""

    def __init__(
        self, clock: Callable[[], float], *, ttl_s: float = NONCE_TTL_S, capacity: int = NONCE_CAPACITY
    ) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._nonces: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def issue(self) -> str:
        nonce = secrets.token_urlsafe(24)
        self._nonces[nonce] = (self._clock(), 0)
        while len(self._nonces) > self._capacity:
            self._nonces.popitem(last=False)
        return nonce

    def use(self, nonce: str, nc: int) -> NonceState:
        entry = self._nonces.get(nonce)
        if entry is None:
            return NonceState.UNKNOWN
        issued_at, last_nc = entry
        if self._clock() - issued_at > self._ttl_s:
            del self._nonces[nonce]
            return NonceState.STALE
        if nc <= last_nc:
            return NonceState.REPLAYED
        self._nonces[nonce] = (issued_at, nc)
        return NonceState.FRESH


def verify(
    creds: Credentials | None,
    *,
    method: str,
    raw_uri: str,
    realm: str,
    ha1: Mapping[str, str] | None,
    nonces: NonceBook,
) -> Verdict:
    """Judge an answer against the account's HA1 per algorithm (``None``: no such account)."""
    if creds is None or ha1 is None or creds.realm != realm or creds.uri != raw_uri:
        return Verdict.CHALLENGE
    stored = ha1.get(creds.algorithm)
    if stored is None:
        return Verdict.CHALLENGE
    expected = expected_response(creds, ha1=stored, method=method)
    if not hmac.compare_digest(expected.encode(), creds.response.encode()):
        return Verdict.CHALLENGE
    state = nonces.use(creds.nonce, creds.nc)
    if state is NonceState.FRESH:
        return Verdict.OK
    return Verdict.CHALLENGE if state is NonceState.REPLAYED else Verdict.STALE
