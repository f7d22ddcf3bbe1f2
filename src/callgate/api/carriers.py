"""/v1/carriers: a team's SIP trunks and Twilio accounts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status
from pydantic import BaseModel

from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.api.schemas.carriers import (
    CarrierCreate,
    CarrierPublic,
    CarrierUpdate,
    SipInboundPublic,
    SipOutboundPublic,
)
from callgate.api.schemas.common import ListPage
from callgate.domain import carriers
from callgate.domain.carriers import Carrier

router = APIRouter(tags=["carriers"])
Limit = Annotated[int, Query(ge=1, le=200)]


def carrier_public(carrier: Carrier) -> CarrierPublic:
    o, i = carrier.outbound, carrier.inbound
    return CarrierPublic(
        id=carrier.id,
        name=carrier.name,
        kind=carrier.kind,
        outbound=SipOutboundPublic(
            host=o.host,
            port=o.port,
            transport=o.transport,
            username=o.username,
            from_domain=o.from_domain,
            password_set=o.has_password,
        )
        if o is not None
        else None,
        inbound=SipInboundPublic(
            allowed_addresses=list(i.allowed_addresses), username=i.username, password_set=i.has_password
        )
        if i is not None
        else None,
        account_sid=carrier.account_sid,
        auth_token_set=carrier.has_auth_token,
        created_at=carrier.created_at,
        updated_at=carrier.updated_at,
    )


def body_fields(body: BaseModel) -> dict[str, Any]:
    """The fields given, with nested objects whole (defaults filled in) except a password left out,
    which the domain reads as "keep the stored one"."""
    out: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if isinstance(value, BaseModel):
            nested = value.model_dump(mode="json")
            if "password" not in value.model_fields_set:
                nested.pop("password", None)
            out[name] = nested
        else:
            out[name] = value
    return out


@router.post("/v1/carriers", status_code=status.HTTP_201_CREATED, operation_id="createCarrier")
async def create_carrier(
    body: Annotated[CarrierCreate, Body()], principal: SecretPrincipal, runtime: RuntimeDep
) -> CarrierPublic:
    fields, now = body_fields(body), runtime.clock.now()
    row = await runtime.db.write(
        lambda s: carriers.create_carrier(s, team_id=principal.team_id, fields=fields, now=now)
    )
    return carrier_public(row)


@router.get("/v1/carriers", operation_id="listCarriers")
async def list_carriers(
    principal: SecretPrincipal, runtime: RuntimeDep, limit: Limit = 50, cursor: str | None = None
) -> ListPage[CarrierPublic]:
    async with runtime.db.read() as s:
        page = await carriers.list_carriers(s, team_id=principal.team_id, limit=limit, cursor=cursor)
    return ListPage(data=[carrier_public(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("/v1/carriers/{carrier_id}", operation_id="getCarrier")
async def get_carrier(carrier_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> CarrierPublic:
    async with runtime.db.read() as s:
        row = await carriers.get_carrier(s, team_id=principal.team_id, carrier_id=carrier_id)
    return carrier_public(row)


@router.patch("/v1/carriers/{carrier_id}", operation_id="updateCarrier")
async def update_carrier(
    carrier_id: str, body: CarrierUpdate, principal: SecretPrincipal, runtime: RuntimeDep
) -> CarrierPublic:
    changes, now = body_fields(body), runtime.clock.now()
    row = await runtime.db.write(
        lambda s: carriers.update_carrier(
            s, team_id=principal.team_id, carrier_id=carrier_id, changes=changes, now=now
        )
    )
    return carrier_public(row)


@router.delete(
    "/v1/carriers/{carrier_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="deleteCarrier"
)
async def delete_carrier(carrier_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> None:
    await runtime.db.write(
        lambda s: carriers.delete_carrier(s, team_id=principal.team_id, carrier_id=carrier_id)
    )
