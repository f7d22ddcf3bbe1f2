"""/v1/contacts and /v1/phone-numbers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.api.schemas.common import Cursor, ListPage
from callgate.api.schemas.contacts import (
    ContactCreate,
    ContactPublic,
    ContactUpdate,
    PhoneNumberCreate,
    PhoneNumberPublic,
    PhoneNumberUpdate,
)
from callgate.domain import contacts, phone_numbers

router = APIRouter(tags=["contacts"])
Limit = Annotated[int, Query(ge=1, le=200)]


@router.post("/v1/contacts", status_code=status.HTTP_201_CREATED, operation_id="createContact")
async def create_contact(
    body: ContactCreate, principal: SecretPrincipal, runtime: RuntimeDep
) -> ContactPublic:
    fields, now = body.model_dump(mode="json"), runtime.clock.now()
    row = await runtime.db.write(
        lambda s: contacts.create_contact(s, team_id=principal.team_id, fields=fields, now=now)
    )
    return ContactPublic.model_validate(row)


@router.get("/v1/contacts", operation_id="listContacts")
async def list_contacts(
    principal: SecretPrincipal, runtime: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> ListPage[ContactPublic]:
    async with runtime.db.read() as s:
        page = await contacts.list_contacts(s, team_id=principal.team_id, limit=limit, cursor=cursor)
    return ListPage(data=[ContactPublic.model_validate(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("/v1/contacts/{contact_id}", operation_id="getContact")
async def get_contact(contact_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> ContactPublic:
    async with runtime.db.read() as s:
        row = await contacts.get_contact(s, team_id=principal.team_id, contact_id=contact_id)
    return ContactPublic.model_validate(row)


@router.patch("/v1/contacts/{contact_id}", operation_id="updateContact")
async def update_contact(
    contact_id: str, body: ContactUpdate, principal: SecretPrincipal, runtime: RuntimeDep
) -> ContactPublic:
    changes, now = body.model_dump(mode="json", exclude_unset=True), runtime.clock.now()
    row = await runtime.db.write(
        lambda s: contacts.update_contact(
            s, team_id=principal.team_id, contact_id=contact_id, changes=changes, now=now
        )
    )
    return ContactPublic.model_validate(row)


@router.delete(
    "/v1/contacts/{contact_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="deleteContact"
)
async def delete_contact(contact_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> None:
    await runtime.db.write(
        lambda s: contacts.delete_contact(s, team_id=principal.team_id, contact_id=contact_id)
    )


@router.post("/v1/phone-numbers", status_code=status.HTTP_201_CREATED, operation_id="createPhoneNumber")
async def create_phone_number(
    body: PhoneNumberCreate, principal: SecretPrincipal, runtime: RuntimeDep
) -> PhoneNumberPublic:
    fields, now = body.model_dump(mode="json"), runtime.clock.now()
    row = await runtime.db.write(
        lambda s: phone_numbers.create_phone_number(s, team_id=principal.team_id, fields=fields, now=now)
    )
    return PhoneNumberPublic.model_validate(row)


@router.get("/v1/phone-numbers", operation_id="listPhoneNumbers")
async def list_phone_numbers(
    principal: SecretPrincipal, runtime: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> ListPage[PhoneNumberPublic]:
    async with runtime.db.read() as s:
        page = await phone_numbers.list_phone_numbers(
            s, team_id=principal.team_id, limit=limit, cursor=cursor
        )
    return ListPage(
        data=[PhoneNumberPublic.model_validate(p) for p in page.items], next_cursor=page.next_cursor
    )


@router.get("/v1/phone-numbers/{number_id}", operation_id="getPhoneNumber")
async def get_phone_number(
    number_id: str, principal: SecretPrincipal, runtime: RuntimeDep
) -> PhoneNumberPublic:
    async with runtime.db.read() as s:
        row = await phone_numbers.get_phone_number(s, team_id=principal.team_id, number_id=number_id)
    return PhoneNumberPublic.model_validate(row)


@router.patch("/v1/phone-numbers/{number_id}", operation_id="updatePhoneNumber")
async def update_phone_number(
    number_id: str, body: PhoneNumberUpdate, principal: SecretPrincipal, runtime: RuntimeDep
) -> PhoneNumberPublic:
    changes, now = body.model_dump(mode="json", exclude_unset=True), runtime.clock.now()
    row = await runtime.db.write(
        lambda s: phone_numbers.update_phone_number(
            s, team_id=principal.team_id, number_id=number_id, changes=changes, now=now
        )
    )
    return PhoneNumberPublic.model_validate(row)


@router.delete(
    "/v1/phone-numbers/{number_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="deletePhoneNumber"
)
async def delete_phone_number(number_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> None:
    await runtime.db.write(
        lambda s: phone_numbers.delete_phone_number(s, team_id=principal.team_id, number_id=number_id)
    )
