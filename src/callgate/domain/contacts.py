"""Contacts: the people a team calls or is called by."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain.ids import new_id
from callgate.store import repo
from callgate.store.models import Contact


async def create_contact(
    session: AsyncSession, *, team_id: str, fields: dict[str, Any], now: datetime
) -> Contact:
    contact = Contact(
        id=new_id("contact"),
        team_id=team_id,
        name=fields.get("name"),
        phone=fields.get("phone"),
        email=fields.get("email"),
        attributes=fields.get("attributes") or {},
        created_at=now,
        updated_at=now,
    )
    session.add(contact)
    await session.flush()
    return contact


async def get_contact(
    session: AsyncSession, *, team_id: str, contact_id: str, for_update: bool = False
) -> Contact:
    return await repo.get_scoped(session, Contact, team_id=team_id, id=contact_id, for_update=for_update)


async def list_contacts(
    session: AsyncSession, *, team_id: str, limit: int, cursor: str | None
) -> repo.Page[Contact]:
    return await repo.list_page(session, Contact, team_id=team_id, limit=limit, cursor=cursor)


async def update_contact(
    session: AsyncSession, *, team_id: str, contact_id: str, changes: dict[str, Any], now: datetime
) -> Contact:
    contact = await get_contact(session, team_id=team_id, contact_id=contact_id, for_update=True)
    for name, value in changes.items():
        setattr(contact, name, {} if name == "attributes" and value is None else value)
    contact.updated_at = now
    await session.flush()
    return contact


async def delete_contact(session: AsyncSession, *, team_id: str, contact_id: str) -> None:
    contact = await get_contact(session, team_id=team_id, contact_id=contact_id, for_update=True)
    await session.delete(contact)
    await session.flush()
