"""Standard Webhooks signing: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

The signature is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed by the secret's bytes
(a secret is ``whsec_`` + base64). While a rotated secret's overlap window lasts, the header carries
one signature per valid secret, space-separated, newest first: receivers that still hold the old
secret keep verifying, and ``standardwebhooks.Webhook.verify`` accepts either.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from callgate.store.sealing import PREFIX as SEALED

__all__ = ["SecretSet", "UnusableSecret", "new_secret", "signed_headers"]

SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh ``whsec_…`` signing secret."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True, slots=True)
class SecretSet:
    """The current secret and, during a rotation's overlap window, the previous one."""

    current: str
    previous: str | None = None
    previous_expires_at: datetime | None = None

    def active(self, now: datetime) -> list[str]:
        keys = [self.current]
        if self.previous and self.previous_expires_at is not None and now < self.previous_expires_at:
            keys.append(self.previous)
        return keys


class UnusableSecret(ValueError):
    """Every secret of a destination is still sealed: the key that sealed it is not installed."""


def signed_headers(
    *, message_id: str, body: bytes, secrets_: Sequence[str], timestamp: datetime
) -> dict[str, str]:
    """Headers for one attempt. ``timestamp`` is the attempt's time (receivers reject old ones)."""
    usable = [secret for secret in secrets_ if not secret.startswith(SEALED)]
    if not usable:
        raise UnusableSecret(
            "the signing secret cannot be opened (was CALLGATE_SECRET_KEY changed without "
            "CALLGATE_PREVIOUS_SECRET_KEYS?): rotate it"
        )
    text = body.decode()
    stamp = timestamp.astimezone(UTC)
    signatures = [Webhook(secret).sign(message_id, stamp, text) for secret in usable]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
