"""/v1/provider-credentials: a team's API keys for cloud STT/TTS/LLM vendors (never returned)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, status

from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.api.schemas.common import ListPage
from callgate.api.schemas.providers import ProviderCredentialCreate, ProviderCredentialPublic
from callgate.domain import provider_credentials
from callgate.domain.provider_credentials import ProviderCredential

router = APIRouter(tags=["provider-credentials"])
Limit = Annotated[int, Query(ge=1, le=200)]


def credential_public(credential: ProviderCredential) -> ProviderCredentialPublic:
    return ProviderCredentialPublic(
        id=credential.id, name=credential.name, provider=credential.provider, created_at=credential.created_at
    )


@router.post(
    "/v1/provider-credentials", status_code=status.HTTP_201_CREATED, operation_id="createProviderCredential"
)
async def create_credential(
    body: Annotated[ProviderCredentialCreate, Body()], principal: SecretPrincipal, runtime: RuntimeDep
) -> ProviderCredentialPublic:
    now = runtime.clock.now()
    row = await runtime.db.write(
        lambda s: provider_credentials.create_credential(
            s, team_id=principal.team_id, name=body.name, provider=body.provider, secret=body.secret, now=now
        )
    )
    return credential_public(row)


@router.get("/v1/provider-credentials", operation_id="listProviderCredentials")
async def list_credentials(
    principal: SecretPrincipal, runtime: RuntimeDep, limit: Limit = 50, cursor: str | None = None
) -> ListPage[ProviderCredentialPublic]:
    async with runtime.db.read() as s:
        page = await provider_credentials.list_credentials(
            s, team_id=principal.team_id, limit=limit, cursor=cursor
        )
    return ListPage(data=[credential_public(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("/v1/provider-credentials/{credential_id}", operation_id="getProviderCredential")
async def get_credential(
    credential_id: str, principal: SecretPrincipal, runtime: RuntimeDep
) -> ProviderCredentialPublic:
    async with runtime.db.read() as s:
        row = await provider_credentials.get_credential(
            s, team_id=principal.team_id, credential_id=credential_id
        )
    return credential_public(row)


@router.delete(
    "/v1/provider-credentials/{credential_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="deleteProviderCredential",
)
async def delete_credential(credential_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> None:
    await runtime.db.write(
        lambda s: provider_credentials.delete_credential(
            s, team_id=principal.team_id, credential_id=credential_id
        )
    )
