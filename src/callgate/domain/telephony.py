"""Phone calls: the record of a call of kind ``phone`` and its placement.

A phone call is placed through the carrier of its ``from_number`` (:func:`prepare_phone_call` hands
the transport a :class:`Dial`). A number without a carrier, or on a carrier whose kind no transport on
this node dials, cannot be placed: the call and its phone side are written, then failed at once with
the end reason ``telephony_unavailable`` — a kept record with a clear reason, never a lost call or a
500. Calls arriving over a SIP trunk are written by :func:`open_inbound_call`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain import calls
from callgate.domain.carriers import Carrier, CarrierSecrets, carrier_secrets, get_carrier
from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.errors import BadRequest, NotFound
from callgate.store.models import Call, PhoneNumber, TranscriptTurn
from callgate.store.models_telephony import PhoneCall

PHONE_TRANSPORT = "pstn"
"""A phone call's ``transport`` until a concrete telephony transport (``twilio``, ``sip_trunk``) exists."""

NO_TELEPHONY = (
    "callgate has no telephony transport configured (no SIP trunk or Twilio account), "
    "so this phone call was not placed"
)


@dataclass(frozen=True, slots=True)
class NewPhoneCall:
    agent_id: str
    from_number: str
    to_number: str
    variables: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    dialect: str | None = None
    webhook: dict[str, Any] | None = None
    """The call's own webhook destination (``calls.NewCall.webhook``), e.g. a Vocode agent's."""


async def find_team_number(session: AsyncSession, *, team_id: str, number: str) -> PhoneNumber | None:
    """The team's registered number ``number`` (another team's number is not found)."""
    stmt = select(PhoneNumber).where(PhoneNumber.team_id == team_id, PhoneNumber.number == number)
    return (await session.execute(stmt)).scalar_one_or_none()


TRANSPORT_OF_CARRIER = {"sip": "sip_trunk", "twilio": "twilio"}
"""The transport that places calls through a carrier of each kind."""


@dataclass(frozen=True, slots=True)
class Dial:
    """An outbound phone call written (``created``) and ready for its transport to dial."""

    call_id: str
    team_id: str
    from_number: str
    to_number: str
    carrier: Carrier
    secrets: CarrierSecrets = field(repr=False)
    ring_timeout_s: float = 30.0
    callback_base: str | None = None
    """Where the carrier reaches this node back (Twilio's webhooks) when ``CALLGATE_PUBLIC_URL`` is
    unset: the base URL of the API request that placed the call."""


class Dialer(Protocol):
    """A transport that places phone calls through carriers of one kind (the runtime's ``dialers``)."""

    def dial(self, dial: Dial) -> None:
        """Start placing the call in the background; its outcome is the call's end (or its session)."""


async def place_phone_call(
    session: AsyncSession, *, team_id: str, spec: NewPhoneCall, now: datetime, join_deadline: datetime
) -> tuple[Call, PhoneCall]:
    """Create an outbound phone call that no transport dials: it fails ``telephony_unavailable``."""
    call, phone, _ = await prepare_phone_call(
        session, team_id=team_id, spec=spec, now=now, join_deadline=join_deadline, dialable=frozenset()
    )
    return call, phone


async def prepare_phone_call(
    session: AsyncSession,
    *,
    team_id: str,
    spec: NewPhoneCall,
    now: datetime,
    join_deadline: datetime,
    dialable: frozenset[str],
) -> tuple[Call, PhoneCall, Dial | None]:
    """Create an outbound phone call from one of the team's numbers.

    When the number's carrier is of a kind in ``dialable`` (carrier kinds this node's transports dial),
    the call stays ``created`` and the :class:`Dial` says how to place it; otherwise the call fails
    ``telephony_unavailable`` and the Dial is None. Raises :class:`BadRequest` if ``from_number`` is not
    a number the team registered.
    """
    number = await find_team_number(session, team_id=team_id, number=spec.from_number)
    if number is None:
        raise BadRequest(
            f"from_number {spec.from_number} is not one of your phone numbers "
            "(register it with POST /v1/phone-numbers)"
        )
    carrier = None
    if number.carrier_id is not None:
        carrier = await get_carrier(session, team_id=team_id, carrier_id=number.carrier_id)
        if carrier.kind not in dialable or (carrier.kind == "sip" and carrier.outbound is None):
            carrier = None
    call = await calls.create_call(
        session,
        team_id=team_id,
        spec=calls.NewCall(
            agent_id=spec.agent_id,
            transport=TRANSPORT_OF_CARRIER[carrier.kind] if carrier is not None else PHONE_TRANSPORT,
            mode="audio",
            variables=spec.variables,
            metadata=spec.metadata,
            kind="phone",
            dialect=spec.dialect,
            webhook=spec.webhook,
        ),
        now=now,
        join_deadline=join_deadline,
    )
    phone = PhoneCall(
        call_id=call.id,
        team_id=team_id,
        direction="outbound",
        from_number=spec.from_number,
        to_number=spec.to_number,
        phone_number_id=number.id,
        options=spec.options,
        created_at=now,
    )
    session.add(phone)
    await session.flush()
    if carrier is not None:
        secrets = await carrier_secrets(session, team_id=team_id, carrier_id=carrier.id)
        ring = float(spec.options.get("ring_timeout_s", 30.0))
        dial = Dial(call.id, team_id, spec.from_number, spec.to_number, carrier, secrets, ring)
        return call, phone, dial
    await calls.transition(
        session,
        call=call,
        to=CallStatus.FAILED,
        reason=EndReason.TELEPHONY_UNAVAILABLE,
        now=now,
        data={"message": NO_TELEPHONY},
    )
    return call, phone, None


async def open_inbound_call(
    session: AsyncSession,
    *,
    team_id: str,
    agent_id: str,
    phone_number_id: str | None,
    from_number: str,
    to_number: str,
    transport: str,
    now: datetime,
    join_deadline: datetime,
) -> str:
    """Write a phone call arriving at the team's number ``to_number`` (answered by ``agent_id``) with
    its inbound phone side; returns the call's id. The transport joins it next."""
    call = await calls.create_call(
        session,
        team_id=team_id,
        spec=calls.NewCall(
            agent_id=agent_id, transport=transport, mode="audio", variables={}, metadata={}, kind="phone"
        ),
        now=now,
        join_deadline=join_deadline,
    )
    session.add(
        PhoneCall(
            call_id=call.id,
            team_id=team_id,
            direction="inbound",
            from_number=from_number[:32],
            to_number=to_number[:32],
            phone_number_id=phone_number_id,
            options={},
            created_at=now,
        )
    )
    await session.flush()
    return call.id


async def get_phone_call(session: AsyncSession, *, team_id: str, call_id: str) -> tuple[Call, PhoneCall]:
    """A phone call of the team; raises NotFound for other teams' calls and for web calls."""
    call = await calls.get_call(session, team_id=team_id, call_id=call_id)
    phone = await session.get(PhoneCall, call.id)
    if phone is None:
        raise NotFound(f"no phone call with id {call_id!r}")
    return call, phone


async def phone_sides(session: AsyncSession, *, call_ids: list[str]) -> dict[str, PhoneCall]:
    """The phone side of each of ``call_ids`` that is a phone call."""
    if not call_ids:
        return {}
    rows = await session.execute(select(PhoneCall).where(PhoneCall.call_id.in_(call_ids)))
    return {row.call_id: row for row in rows.scalars()}


async def list_phone_calls(
    session: AsyncSession, *, team_id: str, offset: int, limit: int, newest_first: bool
) -> tuple[list[tuple[Call, PhoneCall]], int]:
    """One page of the team's phone calls (by creation time) and how many there are in all."""
    joined = select(Call, PhoneCall).join(PhoneCall, PhoneCall.call_id == Call.id)
    joined = joined.where(Call.team_id == team_id)
    order = (Call.created_at.desc(), Call.id.desc()) if newest_first else (Call.created_at, Call.id)
    rows = await session.execute(joined.order_by(*order).offset(offset).limit(limit))
    total_stmt = select(func.count()).select_from(PhoneCall).where(PhoneCall.team_id == team_id)
    total = int((await session.execute(total_stmt)).scalar_one())
    return [(row[0], row[1]) for row in rows.all()], total


async def turns_of(session: AsyncSession, *, call_ids: list[str]) -> dict[str, list[TranscriptTurn]]:
    """The transcript turns of each of ``call_ids``, in order (one query for a page of calls)."""
    if not call_ids:
        return {}
    stmt = select(TranscriptTurn).where(TranscriptTurn.call_id.in_(call_ids))
    out: dict[str, list[TranscriptTurn]] = {}
    for turn in (await session.execute(stmt.order_by(TranscriptTurn.call_id, TranscriptTurn.seq))).scalars():
        out.setdefault(turn.call_id, []).append(turn)
    return out
