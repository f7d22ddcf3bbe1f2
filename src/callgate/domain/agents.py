"""Agents: what a call talks to — a prompt (LLM) or a scripted flow."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain.ids import new_id
from callgate.domain.provider_credentials import check_references
from callgate.domain.tools import seal_tools
from callgate.errors import NotFound, ValidationFailed
from callgate.flows.schema import validate_flow
from callgate.store import repo
from callgate.store.models import Agent, Call

_FIELDS = (
    "name", "prompt", "flow", "initial_message", "variables", "voice", "language", "stt", "llm", "tts",
    "turn_detection", "max_duration_s", "silence_timeout_s", "webhook_url", "tools",
)  # fmt: skip


def _sealed_tools(
    tools: list[dict[str, Any]] | None, stored: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    try:
        return seal_tools(tools or [], stored=stored)
    except ValueError as exc:
        raise ValidationFailed(
            str(exc), errors=[{"loc": ["body", "tools"], "msg": str(exc), "type": "value_error"}]
        ) from exc


async def create_agent(
    session: AsyncSession, *, team_id: str, fields: dict[str, Any], now: datetime
) -> Agent:
    await check_references(session, team_id=team_id, fields=fields)
    agent = Agent(id=new_id("agent"), team_id=team_id, created_at=now, updated_at=now, deleted_at=None)
    for name in _FIELDS:
        setattr(agent, name, fields.get(name))
    if agent.turn_detection is None:
        agent.turn_detection = {}
    agent.tools = _sealed_tools(fields.get("tools"), None)
    session.add(agent)
    await session.flush()
    return agent


async def get_agent(session: AsyncSession, *, team_id: str, agent_id: str, for_update: bool = False) -> Agent:
    return await repo.get_scoped(
        session, Agent, team_id=team_id, id=agent_id, for_update=for_update, deleted_at=None
    )


async def agent_of_call(session: AsyncSession, *, call: Call) -> Agent:
    """The agent a call ran with, even if it has been deleted since."""
    agent = await session.get(Agent, call.agent_id)
    if agent is None:
        raise NotFound("the call's agent does not exist")
    return agent


async def list_agents(
    session: AsyncSession, *, team_id: str, limit: int, cursor: str | None
) -> repo.Page[Agent]:
    return await repo.list_page(
        session, Agent, team_id=team_id, limit=limit, cursor=cursor, where=[Agent.deleted_at.is_(None)]
    )


async def update_agent(
    session: AsyncSession, *, team_id: str, agent_id: str, changes: dict[str, Any], now: datetime
) -> Agent:
    agent = await get_agent(session, team_id=team_id, agent_id=agent_id, for_update=True)
    merged = {name: getattr(agent, name) for name in _FIELDS} | changes
    if (merged["prompt"] is None) == (merged["flow"] is None):
        raise ValidationFailed(
            "an agent has exactly one of `prompt` or `flow`",
            errors=[
                {
                    "loc": ["body", "prompt"],
                    "msg": "give exactly one of `prompt` or `flow`",
                    "type": "value_error",
                }
            ],
        )
    if merged["flow"] is not None and {"flow", "variables", "tools"} & set(changes):
        tools = {t.get("name") or t["type"]: t["type"] for t in merged["tools"] or []}
        validate_flow(merged["flow"], known_variables=merged["variables"], tools=tools)
    await check_references(session, team_id=team_id, fields=changes)
    if "tools" in changes:
        changes = {**changes, "tools": _sealed_tools(changes["tools"], agent.tools)}
    for name, value in changes.items():
        setattr(agent, name, value)
    agent.updated_at = now
    await session.flush()
    return agent


async def delete_agent(session: AsyncSession, *, team_id: str, agent_id: str, now: datetime) -> None:
    """Soft delete: calls keep pointing at the agent they used."""
    agent = await get_agent(session, team_id=team_id, agent_id=agent_id, for_update=True)
    agent.deleted_at = now
    await session.flush()
