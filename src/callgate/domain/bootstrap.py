"""First start: the default team, the demo agent and a development key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.auth.keys import KeyType
from callgate.domain.agents import create_agent
from callgate.domain.keys import DEFAULT_TEAM, create_key, get_or_create_team
from callgate.store import locks
from callgate.store.models import Agent, Team

DEMO_AGENT_NAME = "Maple Street Clinic (demo)"


@dataclass(frozen=True, slots=True)
class Bootstrap:
    created: bool
    team_id: str
    demo_agent_id: str | None
    secret_key: str | None


def demo_agent_fields() -> dict[str, object]:
    from callgate.flows.demo import demo_flow

    flow = demo_flow().model_dump(mode="json", exclude_none=True)
    return {
        "name": DEMO_AGENT_NAME,
        "prompt": None,
        "flow": flow,
        "initial_message": None,
        "variables": {},
        "voice": None,
        "stt": {},
        "llm": {},
        "tts": {},
        "max_duration_s": 600,
        "silence_timeout_s": 60,
        "webhook_url": None,
    }


async def demo_agent_id(session: AsyncSession, *, team_id: str) -> str | None:
    stmt = select(Agent.id).where(
        Agent.team_id == team_id, Agent.name == DEMO_AGENT_NAME, Agent.deleted_at.is_(None)
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def bootstrap(session: AsyncSession, *, now: datetime, max_live_calls: int) -> Bootstrap:
    """Seed an empty database; on a seeded one, only report what is there. Nodes starting together
    seed once: the others wait for the first one's transaction and find the database seeded."""
    await locks.hold(session, locks.SETUP)
    empty = (await session.execute(select(func.count()).select_from(Team))).scalar_one() == 0
    team = await get_or_create_team(session, name=DEFAULT_TEAM, now=now, max_live_calls=max_live_calls)
    if not empty:
        return Bootstrap(False, team.id, await demo_agent_id(session, team_id=team.id), None)
    agent = await create_agent(session, team_id=team.id, fields=demo_agent_fields(), now=now)
    _, plaintext = await create_key(
        session, team_id=team.id, key_type=KeyType.SECRET, now=now, name="development"
    )
    return Bootstrap(True, team.id, agent.id, plaintext)
