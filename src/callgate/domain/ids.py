"""Object ids: a short type prefix and 128 random bits, e.g. ``call_3f9c…``."""

from __future__ import annotations

import secrets

PREFIXES = {
    "team": "team",
    "key": "key",
    "agent": "agt",
    "contact": "con",
    "phone_number": "pn",
    "call": "call",
    "carrier": "car",
    "user": "usr",
    "invite": "inv",
    "provider_credential": "pcred",
}


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}_{secrets.token_hex(16)}"
