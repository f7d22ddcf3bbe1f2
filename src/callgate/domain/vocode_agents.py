"""Vocode agents: a callgate agent plus the voice, action and webhook objects Vocode shows with it.

The agent itself (prompt, initial message, voice name) is an ordinary callgate agent, so calls run it like
any other; the Vocode objects live in ``vocode_agent`` with stable ids. Webhook delivery reads a Vocode
agent's webhook with :func:`vocode_webhook` and sends it Vocode event types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain.agents import create_agent
from callgate.store.models import Agent
from callgate.store.models_telephony import VocodeAgent

EventType = Literal[
    "event_message",
    "event_action",
    "event_phone_call_connected",
    "event_phone_call_ended",
    "event_phone_call_did_not_connect",
    "event_transcript",
    "event_recording",
    "event_human_detection",
]
"""Vocode's webhook event types (a webhook's ``subscriptions``)."""
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


@dataclass(frozen=True, slots=True)
class VocodeObjects:
    voice: dict[str, Any]
    actions: list[dict[str, Any]]
    webhook: dict[str, Any] | None


async def create_vocode_agent(
    session: AsyncSession, *, team_id: str, fields: dict[str, Any], objects: VocodeObjects, now: datetime
) -> tuple[Agent, VocodeAgent]:
    """Create the callgate agent from ``fields`` (every agent field) and keep its Vocode objects."""
    agent = await create_agent(session, team_id=team_id, fields=fields, now=now)
    row = VocodeAgent(
        agent_id=agent.id,
        team_id=team_id,
        voice=objects.voice,
        actions=objects.actions,
        webhook=objects.webhook,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return agent, row


async def vocode_objects(session: AsyncSession, *, agent_ids: list[str]) -> dict[str, VocodeAgent]:
    """The Vocode objects of those of ``agent_ids`` that were created through the Vocode dialect."""
    if not agent_ids:
        return {}
    rows = await session.execute(select(VocodeAgent).where(VocodeAgent.agent_id.in_(agent_ids)))
    return {row.agent_id: row for row in rows.scalars()}


async def vocode_webhook(session: AsyncSession, *, agent_id: str) -> dict[str, Any] | None:
    """The agent's Vocode webhook — ``{"id", "url", "method", "subscriptions"}`` — or None.

    ``subscriptions`` holds values of :data:`EVENT_TYPES`; ``method`` is ``"POST"`` or ``"GET"``.
    """
    row = await session.get(VocodeAgent, agent_id)
    return row.webhook if row is not None else None
