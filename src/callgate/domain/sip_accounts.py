"""The call behind a SIP username, and whether its credentials may be used right now.

Credentials belong to one call (:mod:`callgate.auth.sip`): they work while the call is waiting to be
joined and its join deadline has not passed, and afterwards only on the connection that holds the call
(a re-REGISTER during the call). Once an INVITE has joined the call, any other use is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.store.models import Call

_USERNAME = re.compile(r"^u([0-9a-f]{16})$")

EXPIRED = "Credentials Expired"
USED = "Credentials Already Used"


@dataclass(frozen=True, slots=True)
class SipAccount:
    call_id: str
    team_id: str
    username: str
    realm: str
    target: str
    headers: dict[str, str]
    ha1: dict[str, str]
    """HA1 by digest algorithm name (``MD5``, ``SHA-256``)."""
    status: CallStatus
    end_reason: str | None
    join_deadline: datetime

    @classmethod
    def of(cls, call: Call) -> SipAccount | None:
        auth: dict[str, Any] | None = call.sip_auth
        if not auth:
            return None
        return cls(
            call_id=call.id,
            team_id=call.team_id,
            username=str(auth["username"]),
            realm=str(auth["realm"]),
            target=str(auth["target"]),
            headers={str(k): str(v) for k, v in dict(auth.get("headers") or {}).items()},
            ha1={"MD5": str(auth["ha1_md5"]), "SHA-256": str(auth["ha1_sha256"])},
            status=CallStatus(call.status),
            end_reason=call.end_reason,
            join_deadline=call.join_deadline,
        )

    def refusal(self, *, now: datetime, held_here: bool) -> str | None:
        """The 403 reason phrase if the credentials may not be used now, else ``None``.

        ``held_here``: the asking connection is the one whose INVITE joined the call.
        """
        if self.status is CallStatus.CREATED:
            return None if now < self.join_deadline else EXPIRED
        if self.status.is_live and held_here:
            return None
        if self.end_reason == EndReason.JOIN_DEADLINE_MISSED:
            return EXPIRED
        return USED


async def find_account(session: AsyncSession, *, username: str) -> SipAccount | None:
    """The SIP call whose credentials have ``username``, or ``None``.

    Usernames are ``u`` + the first 16 hex digits of the call id's random part, so the call is found
    with a primary-key range scan: ids are ``call_`` + 32 lowercase hex digits, an alphabet on which
    binary and locale collations agree.
    """
    match = _USERNAME.match(username)
    if match is None:
        return None
    prefix = match.group(1)
    stmt = select(Call).where(Call.id >= f"call_{prefix}", Call.transport == "sip")
    if prefix != "f" * 16:
        stmt = stmt.where(Call.id < f"call_{int(prefix, 16) + 1:016x}")
    for call in (await session.execute(stmt.limit(4))).scalars():
        account = SipAccount.of(call)
        if account is not None and account.username == username:
            return account
    return None
