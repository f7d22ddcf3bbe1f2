"""Phone numbers a team owns, each reached through one of the team's carriers (``carrier_id``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain.agents import get_agent
from callgate.domain.carriers import get_carrier
from callgate.domain.ids import new_id
from callgate.errors import Conflict
from callgate.store import repo
from callgate.store.models import PhoneNumber


async def create_phone_number(
    session: AsyncSession, *, team_id: str, fields: dict[str, Any], now: datetime
) -> PhoneNumber:
    number = fields["number"]
    taken = await session.execute(select(PhoneNumber.id).where(PhoneNumber.number == number))
    if taken.first() is not None:
        raise Conflict(f"the number {number} is already registered")
    if fields.get("agent_id") is not None:  # "" too: a 404 here, not a foreign-key failure at flush
        await get_agent(session, team_id=team_id, agent_id=fields["agent_id"])
    if fields.get("carrier_id"):
        await get_carrier(session, team_id=team_id, carrier_id=fields["carrier_id"])
    row = PhoneNumber(
        id=new_id("phone_number"),
        team_id=team_id,
        number=number,
        agent_id=fields.get("agent_id"),
        label=fields.get("label"),
        carrier_id=fields.get("carrier_id"),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def get_phone_number(
    session: AsyncSession, *, team_id: str, number_id: str, for_update: bool = False
) -> PhoneNumber:
    return await repo.get_scoped(session, PhoneNumber, team_id=team_id, id=number_id, for_update=for_update)


async def list_phone_numbers(
    session: AsyncSession, *, team_id: str, limit: int, cursor: str | None
) -> repo.Page[PhoneNumber]:
    return await repo.list_page(session, PhoneNumber, team_id=team_id, limit=limit, cursor=cursor)


async def update_phone_number(
    session: AsyncSession, *, team_id: str, number_id: str, changes: dict[str, Any], now: datetime
) -> PhoneNumber:
    row = await get_phone_number(session, team_id=team_id, number_id=number_id, for_update=True)
    if changes.get("agent_id") is not None:
        await get_agent(session, team_id=team_id, agent_id=changes["agent_id"])
    if changes.get("carrier_id"):
        await get_carrier(session, team_id=team_id, carrier_id=changes["carrier_id"])
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = now
    await session.flush()
    return row


async def delete_phone_number(session: AsyncSession, *, team_id: str, number_id: str) -> None:
    row = await get_phone_number(session, team_id=team_id, number_id=number_id, for_update=True)
    await session.delete(row)
    await session.flush()
