"""Carrier schemas: SIP trunks and Twilio accounts. Secrets go in, never out (``*_set`` flags instead)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from callgate.api.schemas.common import Name, Strict

Host = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.\-:\[\]]+$")]
SipUser = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s@:;<>\"]+$")]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Network = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class SipOutboundIn(Strict):
    host: Host = Field(description="The carrier's SIP server (name or IP address).")
    port: int = Field(default=5060, ge=1, le=65535)
    transport: Literal["udp", "tcp"] = "udp"
    username: SipUser | None = Field(
        default=None, description="Digest username, when the carrier challenges."
    )
    password: Secret | None = Field(default=None, description="Digest password; never returned.")
    from_domain: Host | None = Field(default=None, description="Host part of the From URI (default: host).")


class SipInboundIn(Strict):
    allowed_addresses: list[Network] = Field(
        default_factory=list,
        max_length=64,
        description="CIDR networks (or single addresses) whose INVITEs are accepted.",
    )
    username: SipUser | None = Field(default=None, description="Challenge INVITEs with digest as this user.")
    password: Secret | None = Field(default=None, description="The digest password; never returned.")


class SipCarrierCreate(Strict):
    kind: Literal["sip"]
    name: Name
    outbound: SipOutboundIn | None = None
    inbound: SipInboundIn | None = None


class TwilioCarrierCreate(Strict):
    kind: Literal["twilio"]
    name: Name
    account_sid: Annotated[str, StringConstraints(pattern=r"^AC[0-9a-fA-F]{32}$")]
    auth_token: Secret = Field(description="The account's auth token; never returned.")


CarrierCreate = Annotated[SipCarrierCreate | TwilioCarrierCreate, Field(discriminator="kind")]


class CarrierUpdate(Strict):
    """``outbound``/``inbound`` replace the whole object; a password left out of it keeps the stored one."""

    name: Name | None = None
    outbound: SipOutboundIn | None = None
    inbound: SipInboundIn | None = None
    account_sid: Annotated[str, StringConstraints(pattern=r"^AC[0-9a-fA-F]{32}$")] | None = None
    auth_token: Secret | None = None


class SipOutboundPublic(BaseModel):
    host: str
    port: int
    transport: str
    username: str | None
    from_domain: str | None
    password_set: bool


class SipInboundPublic(BaseModel):
    allowed_addresses: list[str]
    username: str | None
    password_set: bool


class CarrierPublic(BaseModel):
    id: str
    name: str
    kind: Literal["sip", "twilio"]
    outbound: SipOutboundPublic | None = Field(description="SIP trunks: where outbound calls go.")
    inbound: SipInboundPublic | None = Field(description="SIP trunks: whose INVITEs are accepted.")
    account_sid: str | None = Field(description="Twilio accounts.")
    auth_token_set: bool
    created_at: datetime
    updated_at: datetime
