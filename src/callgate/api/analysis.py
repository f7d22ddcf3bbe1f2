"""/v1/agents/{agent_id}/analysis-plan — what post-call analysis extracts for an agent's calls."""

from __future__ import annotations

from fastapi import APIRouter, status

from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.api.schemas.webhooks import AnalysisPlanPublic, AnalysisPlanPut
from callgate.domain import analysis

router = APIRouter(prefix="/v1/agents/{agent_id}/analysis-plan", tags=["analysis"])


@router.put("", operation_id="putAnalysisPlan")
async def put_plan(
    agent_id: str, body: AnalysisPlanPut, principal: SecretPrincipal, runtime: RuntimeDep
) -> AnalysisPlanPublic:
    """Prompt agents: the agent's LLM fills `data_schema` from each transcript after the call.
    Flow agents need no plan: their collected slots are the data."""
    now = runtime.clock.now()
    plan = await runtime.db.write(
        lambda s: analysis.put_plan(
            s,
            team_id=principal.team_id,
            agent_id=agent_id,
            data_schema=body.data_schema,
            instructions=body.instructions,
            now=now,
        )
    )
    return AnalysisPlanPublic.model_validate(plan)


@router.get("", operation_id="getAnalysisPlan")
async def get_plan(agent_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> AnalysisPlanPublic:
    async with runtime.db.read() as s:
        plan = await analysis.get_plan(s, team_id=principal.team_id, agent_id=agent_id)
    return AnalysisPlanPublic.model_validate(plan)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, operation_id="deleteAnalysisPlan")
async def delete_plan(agent_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> None:
    await runtime.db.write(lambda s: analysis.delete_plan(s, team_id=principal.team_id, agent_id=agent_id))
