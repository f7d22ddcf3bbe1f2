"""Per-call SIP digest credentials (RFC 8760: MD5 and SHA-256).

The password is returned once in the create answer; only the HA1 hashes are stored, which is all a
digest verifier needs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SipCredentials:
    username: str
    password: str
    realm: str
    target: str
    headers: dict[str, str]

    def stored(self) -> dict[str, Any]:
        a1 = f"{self.username}:{self.realm}:{self.password}".encode()
        return {
            "username": self.username,
            "realm": self.realm,
            "target": self.target,
            "headers": self.headers,
            "ha1_md5": hashlib.md5(a1, usedforsecurity=False).hexdigest(),
            "ha1_sha256": hashlib.sha256(a1).hexdigest(),
        }


def new_credentials(*, call_id: str, realm: str) -> SipCredentials:
    short = call_id.split("_", 1)[-1][:16]
    return SipCredentials(
        username=f"u{short}",
        password=secrets.token_urlsafe(24),
        realm=realm,
        target=f"sip:agent-{short}@{realm}",
        headers={"X-Callgate-Call-Id": call_id},
    )
