"""/v1/agents — define what a call talks to."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.api.schemas.agents import AgentCreate, AgentPublic, AgentUpdate
from callgate.api.schemas.common import Cursor, ListPage
from callgate.domain import agents
from callgate.errors import ValidationFailed
from callgate.net_guard import check_url
from callgate.runtime import Runtime

router = APIRouter(prefix="/v1/agents", tags=["agents"])

Limit = Annotated[int, Query(ge=1, le=200)]


async def check_webhook_url(runtime: Runtime, fields: dict[str, Any]) -> None:
    """An agent's ``webhook_url`` passes the outbound guard when saved, as endpoint and call URLs do
    (deliveries check it again when they connect)."""
    if (url := fields.get("webhook_url")) is not None:
        await check_url(url, runtime.webhooks.policy, field="body.webhook_url")


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="createAgent")
async def create_agent(body: AgentCreate, principal: SecretPrincipal, runtime: RuntimeDep) -> AgentPublic:
    fields = body.model_dump(mode="json") | {
        "turn_detection": body.turn_detection.stored(),
        "tools": body.stored_tools(),
    }
    await check_webhook_url(runtime, fields)
    now = runtime.clock.now()
    agent = await runtime.db.write(
        lambda s: agents.create_agent(s, team_id=principal.team_id, fields=fields, now=now)
    )
    return AgentPublic.model_validate(agent)


@router.get("", operation_id="listAgents")
async def list_agents(
    principal: SecretPrincipal, runtime: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> ListPage[AgentPublic]:
    async with runtime.db.read() as s:
        page = await agents.list_agents(s, team_id=principal.team_id, limit=limit, cursor=cursor)
    return ListPage(data=[AgentPublic.model_validate(a) for a in page.items], next_cursor=page.next_cursor)


@router.get("/{agent_id}", operation_id="getAgent")
async def get_agent(agent_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> AgentPublic:
    async with runtime.db.read() as s:
        agent = await agents.get_agent(s, team_id=principal.team_id, agent_id=agent_id)
    return AgentPublic.model_validate(agent)


@router.patch("/{agent_id}", operation_id="updateAgent")
async def update_agent(
    agent_id: str, body: AgentUpdate, principal: SecretPrincipal, runtime: RuntimeDep
) -> AgentPublic:
    try:
        changes = body.changes()
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from exc
    await check_webhook_url(runtime, changes)
    now = runtime.clock.now()
    agent = await runtime.db.write(
        lambda s: agents.update_agent(
            s, team_id=principal.team_id, agent_id=agent_id, changes=changes, now=now
        )
    )
    return AgentPublic.model_validate(agent)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="deleteAgent")
async def delete_agent(agent_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> None:
    now = runtime.clock.now()
    await runtime.db.write(
        lambda s: agents.delete_agent(s, team_id=principal.team_id, agent_id=agent_id, now=now)
    )
