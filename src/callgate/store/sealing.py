"""Secrets the server must read back (webhook signing secrets), encrypted at rest.

A key is hashed when only its holder needs to prove it; a webhook signing secret is different: callgate
itself signs with it, so it must be readable. It is stored *sealed*: AES-256-GCM under a key derived
(HKDF-SHA256) from ``CALLGATE_SECRET_KEY``, so a copy of the database alone (a backup, a replica, a
leaked dump) does not let anyone forge callgate's webhooks.

Stored form: ``sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``. The column type
:class:`SealedString` seals on write and opens on read, so the rest of the code sees plaintext.
Values written before sealing existed (plain ``whsec_…``) are read as they are; the server seals them
at start. Each process installs its key at start (:func:`install`), after the keys listed in
``CALLGATE_PREVIOUS_SECRET_KEYS``: those still open what they sealed, and the server re-seals such
values under the current key at start, so a new ``CALLGATE_SECRET_KEY`` can be rolled out.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["SealedString", "SealingError", "current_prefix", "install", "open_", "seal"]

log = logging.getLogger(__name__)

PREFIX = "sealed:v1:"
_INFO = b"callgate sealed secrets v1"
_lock = threading.Lock()
_keys: dict[str, AESGCM] = {}
_current: str | None = None


class SealingError(RuntimeError):
    """No key is installed, or none of them opens a sealed value (the secret key changed)."""


def install(secret_key: str) -> str:
    """Make ``secret_key`` the one new values are sealed with (idempotent); returns its key id."""
    global _current
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key.encode())
    key_id = hashlib.sha256(derived).hexdigest()[:12]
    with _lock:
        _keys.setdefault(key_id, AESGCM(derived))
        _current = key_id
    return key_id


def current_prefix() -> str:
    """What every value sealed under the current key starts with."""
    if _current is None:
        raise SealingError("no sealing key is installed (callgate.store.sealing.install)")
    return f"{PREFIX}{_current}:"


def seal(plaintext: str) -> str:
    key_id = _current
    if key_id is None:
        raise SealingError("no sealing key is installed (callgate.store.sealing.install)")
    nonce = os.urandom(12)
    box = _keys[key_id].encrypt(nonce, plaintext.encode(), key_id.encode())
    return f"{PREFIX}{key_id}:{base64.urlsafe_b64encode(nonce + box).decode()}"


def open_(stored: str) -> str:
    """The plaintext of a sealed value; a value stored before sealing is returned as it is."""
    if not stored.startswith(PREFIX):
        return stored
    key_id, _, body = stored[len(PREFIX) :].partition(":")
    aead = _keys.get(key_id)
    if aead is None:
        raise SealingError(f"no installed key opens secrets sealed under key {key_id!r}")
    try:
        raw = base64.urlsafe_b64decode(body)
        return aead.decrypt(raw[:12], raw[12:], key_id.encode()).decode()
    except (InvalidTag, ValueError) as exc:
        raise SealingError("a sealed secret is damaged") from exc


class SealedString(TypeDecorator[str]):
    """A string column holding a sealed secret (see the module docstring)."""

    impl = String(255)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or value.startswith(PREFIX):
            return value
        return seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        try:
            return open_(str(value))
        except SealingError as exc:
            # Unusable, not fatal: the row still loads (so it can be rotated) and signing with it
            # fails with a clear error; see callgate.webhooks.signing.
            log.error("a sealed secret cannot be opened (%s); rotate it", exc)
            return str(value)
