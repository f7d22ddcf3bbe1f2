"""Contact and phone-number schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import EmailStr, Field, StringConstraints

from callgate.api.schemas.common import Metadata, Name, Public, Strict

E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9]\d{6,14}$")]


class ContactCreate(Strict):
    name: Name | None = None
    phone: E164 | None = None
    email: EmailStr | None = None
    attributes: Metadata = Field(default_factory=dict)


class ContactUpdate(Strict):
    name: Name | None = None
    phone: E164 | None = None
    email: EmailStr | None = None
    attributes: Metadata | None = None


class ContactPublic(Public):
    id: str
    name: str | None
    phone: str | None
    email: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class PhoneNumberCreate(Strict):
    number: E164 = Field(description="The number in E.164 form, e.g. +14155550123.")
    agent_id: str | None = Field(default=None, description="The agent that answers calls to this number.")
    label: Name | None = None
    carrier_id: str | None = Field(
        default=None, description="The carrier (`/v1/carriers`) the number is reached through."
    )


class PhoneNumberUpdate(Strict):
    agent_id: str | None = None
    label: Name | None = None
    carrier_id: str | None = None


class PhoneNumberPublic(Public):
    id: str
    number: str
    agent_id: str | None
    label: str | None
    carrier_id: str | None
    created_at: datetime
    updated_at: datetime
