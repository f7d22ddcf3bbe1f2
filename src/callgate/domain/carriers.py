"""Carriers: a team's ways to the phone network — SIP trunks and Twilio accounts (data access, no HTTP).

Secrets (SIP digest passwords, Twilio's auth token) are sealed at rest (:mod:`callgate.store.sealing`)
and never leave this module in a :class:`Carrier`: a caller that must use one (the SIP trunk answering
a digest challenge, the Twilio signature check) asks for :func:`carrier_secrets` explicitly.
Everything here hands back plain frozen dataclasses, never ORM rows.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import String, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from callgate.domain.ids import new_id
from callgate.errors import ValidationFailed
from callgate.store import repo
from callgate.store.models import PhoneNumber
from callgate.store.models_telephony import Carrier as CarrierRow
from callgate.store.sealing import PREFIX, current_prefix

__all__ = [
    "Carrier",
    "CarrierSecrets",
    "SipInbound",
    "SipOutbound",
    "carrier_secrets",
    "create_carrier",
    "delete_carrier",
    "get_carrier",
    "inbound_networks",
    "list_carriers",
    "route_inbound",
    "seal_stored_secrets",
    "update_carrier",
]

KINDS = ("sip", "twilio")
_SECRETS = ("outbound_password", "inbound_password", "auth_token")


@dataclass(frozen=True, slots=True)
class SipOutbound:
    """Where calls placed through a SIP trunk go, and the digest username for its challenges."""

    host: str
    port: int
    transport: str
    """``udp`` or ``tcp``."""
    username: str | None
    from_domain: str | None
    has_password: bool


@dataclass(frozen=True, slots=True)
class SipInbound:
    """Whose INVITEs a SIP trunk accepts: source networks, and optionally a digest challenge."""

    allowed_addresses: tuple[str, ...]
    """CIDR networks, normalised (``203.0.113.7/32``)."""
    username: str | None
    has_password: bool


@dataclass(frozen=True, slots=True)
class Carrier:
    id: str
    team_id: str
    name: str
    kind: str
    outbound: SipOutbound | None
    inbound: SipInbound | None
    account_sid: str | None
    has_auth_token: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CarrierSecrets:
    outbound_password: str | None
    inbound_password: str | None
    auth_token: str | None


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"field": field, "message": message, "type": "value_error"}])


def networks(values: list[str], *, field: str) -> list[str]:
    """``values`` as normalised CIDR networks (a bare address is its own /32 or /128)."""
    out = []
    for i, value in enumerate(values):
        try:
            out.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError as exc:
            raise _invalid(f"{field}[{i}]", f"{value!r} is not an IP address or CIDR network") from exc
    return out


def view(row: CarrierRow) -> Carrier:
    config = row.config
    outbound = inbound = None
    if row.kind == "sip":
        if (o := config.get("outbound")) is not None:
            outbound = SipOutbound(
                host=o["host"],
                port=int(o["port"]),
                transport=o["transport"],
                username=o.get("username"),
                from_domain=o.get("from_domain"),
                has_password=row.outbound_password is not None,
            )
        if (i := config.get("inbound")) is not None:
            inbound = SipInbound(
                allowed_addresses=tuple(i.get("allowed_addresses") or ()),
                username=i.get("username"),
                has_password=row.inbound_password is not None,
            )
    return Carrier(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        kind=row.kind,
        outbound=outbound,
        inbound=inbound,
        account_sid=config.get("account_sid"),
        has_auth_token=row.auth_token is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _apply(row: CarrierRow, fields: dict[str, Any]) -> None:
    """Set ``fields`` (already shaped by the API schema) on ``row``, checking they fit its kind.

    ``outbound``/``inbound`` replace the whole object; a password left out keeps the stored one,
    ``null`` removes it.
    """
    config = dict(row.config)
    if "name" in fields:
        row.name = fields["name"]
    sip_only, twilio_only = {"outbound", "inbound"}, {"account_sid", "auth_token"}
    wrong = (twilio_only if row.kind == "sip" else sip_only) & {k for k, v in fields.items() if v is not None}
    if wrong:
        name = min(wrong)
        raise _invalid(f"body.{name}", f"{name} does not apply to a carrier of kind {row.kind!r}")
    for side in ("outbound", "inbound"):
        if side not in fields:
            continue
        value = fields[side]
        if value is None:
            config.pop(side, None)
            setattr(row, f"{side}_password", None)
            continue
        value = dict(value)
        if "password" in value:
            setattr(row, f"{side}_password", value.pop("password"))
        if side == "inbound":
            value["allowed_addresses"] = networks(
                list(value.get("allowed_addresses") or []), field="body.inbound.allowed_addresses"
            )
            if row.inbound_password is not None and not value.get("username"):
                raise _invalid("body.inbound.username", "an inbound password needs a username")
        config[side] = value
    if fields.get("account_sid") is not None:
        config["account_sid"] = fields["account_sid"]
    if fields.get("auth_token") is not None:
        row.auth_token = fields["auth_token"]
    row.config = config
    flag_modified(row, "config")


async def create_carrier(
    session: AsyncSession, *, team_id: str, fields: dict[str, Any], now: datetime
) -> Carrier:
    kind = fields["kind"]
    if kind not in KINDS:
        raise _invalid("body.kind", f"kind must be one of {', '.join(KINDS)}")
    row = CarrierRow(
        id=new_id("carrier"),
        team_id=team_id,
        name=fields["name"],
        kind=kind,
        config={},
        outbound_password=None,
        inbound_password=None,
        auth_token=None,
        created_at=now,
        updated_at=now,
    )
    _apply(row, {k: v for k, v in fields.items() if k != "kind"})
    if kind == "sip" and not (row.config.get("outbound") or row.config.get("inbound")):
        raise _invalid("body", "a sip carrier needs outbound, inbound or both")
    if kind == "twilio" and not (row.config.get("account_sid") and row.auth_token):
        raise _invalid("body", "a twilio carrier needs account_sid and auth_token")
    session.add(row)
    await session.flush()
    return view(row)


async def _row(
    session: AsyncSession, *, team_id: str, carrier_id: str, for_update: bool = False
) -> CarrierRow:
    return await repo.get_scoped(session, CarrierRow, team_id=team_id, id=carrier_id, for_update=for_update)


async def get_carrier(session: AsyncSession, *, team_id: str, carrier_id: str) -> Carrier:
    """The team's carrier; :class:`~callgate.errors.NotFound` for another team's."""
    return view(await _row(session, team_id=team_id, carrier_id=carrier_id))


async def carrier_secrets(session: AsyncSession, *, team_id: str, carrier_id: str) -> CarrierSecrets:
    """The carrier's secrets in plain text, for the transport that must use them."""
    row = await _row(session, team_id=team_id, carrier_id=carrier_id)
    return CarrierSecrets(row.outbound_password, row.inbound_password, row.auth_token)


async def list_carriers(
    session: AsyncSession, *, team_id: str, limit: int, cursor: str | None
) -> repo.Page[Carrier]:
    page = await repo.list_page(session, CarrierRow, team_id=team_id, limit=limit, cursor=cursor)
    return repo.Page(items=[view(r) for r in page.items], next_cursor=page.next_cursor)


async def update_carrier(
    session: AsyncSession, *, team_id: str, carrier_id: str, changes: dict[str, Any], now: datetime
) -> Carrier:
    row = await _row(session, team_id=team_id, carrier_id=carrier_id, for_update=True)
    _apply(row, changes)
    if row.kind == "sip" and not (row.config.get("outbound") or row.config.get("inbound")):
        raise _invalid("body", "a sip carrier needs outbound, inbound or both")
    row.updated_at = now
    await session.flush()
    return view(row)


async def delete_carrier(session: AsyncSession, *, team_id: str, carrier_id: str) -> None:
    """Delete the carrier; its phone numbers stay, without a carrier."""
    row = await _row(session, team_id=team_id, carrier_id=carrier_id, for_update=True)
    await session.delete(row)
    await session.flush()


async def seal_stored_secrets(session: AsyncSession) -> int:
    """Re-seal carrier secrets sealed under a previous secret key (like
    :func:`callgate.webhooks.endpoints.seal_stored_secrets`); returns how many rows were rewritten."""
    current = current_prefix()
    stale = [type_coerce(getattr(CarrierRow, c), String) for c in _SECRETS]
    where = or_(*[c.is_not(None) & ~c.startswith(current) for c in stale])
    count = 0
    for row in (await session.execute(select(CarrierRow).where(where))).scalars():
        opened = [c for c in _SECRETS if (v := getattr(row, c)) is not None and not v.startswith(PREFIX)]
        for column in opened:  # a value still sealed could not be opened: it can only be replaced
            flag_modified(row, column)
        count += bool(opened)
    await session.flush()
    return count


# --- inbound calls over SIP trunks -----------------------------------------------------------------

_NUMBER = re.compile(r"^\+?([1-9]\d{6,14})$")


class InboundVerdict(StrEnum):
    ANSWER = "answer"
    FORBIDDEN = "forbidden"
    """No SIP carrier accepts INVITEs from the source address (SIP 403)."""
    UNKNOWN_NUMBER = "unknown_number"
    """No number with an agent on a carrier that accepts the source (SIP 404)."""


@dataclass(frozen=True, slots=True)
class InboundRoute:
    verdict: InboundVerdict
    team_id: str | None = None
    carrier_id: str | None = None
    phone_number_id: str | None = None
    number: str | None = None
    agent_id: str | None = None


def normalize_number(user: str) -> str | None:
    """The E.164 form of a SIP URI's user part (``+14155550123`` or ``14155550123``); None otherwise."""
    match = _NUMBER.match(user.strip())
    return f"+{match.group(1)}" if match else None


async def inbound_networks(session: AsyncSession) -> list[tuple[str, str]]:
    """``(carrier_id, network)`` for every SIP carrier's inbound networks (of every team): what a
    SIP listener may cache to refuse other sources without a database query."""
    rows = await session.execute(select(CarrierRow.id, CarrierRow.config).where(CarrierRow.kind == "sip"))
    return [
        (carrier_id, network)
        for carrier_id, config in rows.all()
        for network in ((config or {}).get("inbound") or {}).get("allowed_addresses") or []
    ]


def carriers_allowing(source_ip: str, networks: list[tuple[str, str]]) -> set[str]:
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return set()
    return {cid for cid, net in networks if address in ipaddress.ip_network(net, strict=False)}


async def route_inbound(session: AsyncSession, *, number: str, source_ip: str) -> InboundRoute:
    """Who answers an INVITE for ``number`` (a SIP user part) arriving from ``source_ip``."""
    allowed = carriers_allowing(source_ip, await inbound_networks(session))
    if not allowed:
        return InboundRoute(InboundVerdict.FORBIDDEN)
    e164 = normalize_number(number)
    if e164 is None:
        return InboundRoute(InboundVerdict.UNKNOWN_NUMBER)
    stmt = select(PhoneNumber).where(
        PhoneNumber.number == e164, PhoneNumber.carrier_id.in_(allowed), PhoneNumber.agent_id.is_not(None)
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        return InboundRoute(InboundVerdict.UNKNOWN_NUMBER)
    return InboundRoute(
        InboundVerdict.ANSWER,
        team_id=row.team_id,
        carrier_id=row.carrier_id,
        phone_number_id=row.id,
        number=row.number,
        agent_id=row.agent_id,
    )
