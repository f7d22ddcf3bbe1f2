"""Provider credentials: a team's API keys for cloud speech and language vendors (data access, no HTTP).

An agent names a credential by id in its engine settings (``{"engine": "deepgram", "credential_id":
"pcred_…"}``, fallbacks included). The key is sealed at rest (:mod:`callgate.store.sealing`) and never
leaves this module in a :class:`ProviderCredential`; only :func:`resolve` hands secrets out, to the
call plan a joining caller gets (the engines of that call are built from it), never to the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from callgate.domain.ids import new_id
from callgate.errors import ValidationFailed
from callgate.store import repo
from callgate.store.models_providers import ProviderCredential as Row
from callgate.store.sealing import PREFIX, current_prefix

__all__ = [
    "ProviderCredential",
    "check_references",
    "create_credential",
    "credential_ids",
    "delete_credential",
    "list_credentials",
    "resolve",
    "seal_stored_secrets",
]


@dataclass(frozen=True, slots=True)
class ProviderCredential:
    id: str
    name: str
    provider: str
    created_at: datetime


def _view(row: Row) -> ProviderCredential:
    return ProviderCredential(id=row.id, name=row.name, provider=row.provider, created_at=row.created_at)


async def create_credential(
    session: AsyncSession, *, team_id: str, name: str, provider: str, secret: str, now: datetime
) -> ProviderCredential:
    row = Row(
        id=new_id("provider_credential"),
        team_id=team_id,
        name=name,
        provider=provider,
        secret=secret,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return _view(row)


async def list_credentials(
    session: AsyncSession, *, team_id: str, limit: int, cursor: str | None
) -> repo.Page[ProviderCredential]:
    page = await repo.list_page(session, Row, team_id=team_id, limit=limit, cursor=cursor)
    return repo.Page(items=[_view(r) for r in page.items], next_cursor=page.next_cursor)


async def get_credential(session: AsyncSession, *, team_id: str, credential_id: str) -> ProviderCredential:
    return _view(await repo.get_scoped(session, Row, team_id=team_id, id=credential_id))


async def delete_credential(session: AsyncSession, *, team_id: str, credential_id: str) -> None:
    """Delete it. Agents that name it keep their settings: their calls skip that engine (to its
    fallback, if any) until the agent names another credential."""
    row = await repo.get_scoped(session, Row, team_id=team_id, id=credential_id, for_update=True)
    await session.delete(row)
    await session.flush()


def credential_ids(settings: Mapping[str, Any] | None) -> set[str]:
    """Every ``credential_id`` an engine settings dict names, its ``fallback`` list included."""
    found: set[str] = set()
    if not settings:
        return found
    value = settings.get("credential_id")
    if isinstance(value, str):
        found.add(value)
    for nested in settings.get("fallback") or ():
        if isinstance(nested, Mapping):
            found |= credential_ids(nested)
    return found


def _all_ids(agent_settings: Iterable[Mapping[str, Any] | None]) -> set[str]:
    out: set[str] = set()
    for settings in agent_settings:
        out |= credential_ids(settings)
    return out


async def check_references(session: AsyncSession, *, team_id: str, fields: Mapping[str, Any]) -> None:
    """Every credential an agent's ``stt``/``tts``/``llm`` names must be one of the team's."""
    for role in ("stt", "tts", "llm"):
        wanted = credential_ids(fields.get(role))
        if not wanted:
            continue
        stmt = select(Row.id).where(Row.team_id == team_id, Row.id.in_(wanted))
        known = set((await session.execute(stmt)).scalars())
        for missing in sorted(wanted - known):
            raise ValidationFailed(
                f"{role} names an unknown provider credential",
                errors=[{"loc": [role, "credential_id"], "msg": f"no provider credential {missing!r}",
                         "type": "unknown_credential"}],
            )  # fmt: skip


async def resolve(
    session: AsyncSession, *, team_id: str, settings: Iterable[Mapping[str, Any] | None]
) -> dict[str, str]:
    """The secrets of the credentials ``settings`` name, by id (those deleted since are left out)."""
    wanted = _all_ids(settings)
    if not wanted:
        return {}
    stmt = select(Row).where(Row.team_id == team_id, Row.id.in_(wanted))
    rows = (await session.execute(stmt)).scalars()
    return {row.id: row.secret for row in rows if not row.secret.startswith(PREFIX)}  # unopenable: left out


async def seal_stored_secrets(session: AsyncSession) -> int:
    """Re-seal keys sealed under a previous secret key (like the carriers'); returns rows rewritten."""
    current = current_prefix()
    stmt = select(Row).where(~type_coerce(Row.secret, String).startswith(current))
    count = 0
    for row in (await session.execute(stmt)).scalars():
        if row.secret.startswith(PREFIX):
            continue  # still sealed: no installed key opens it; it can only be replaced
        flag_modified(row, "secret")  # opened on load: written back sealed under the current key
        count += 1
    await session.flush()
    return count
