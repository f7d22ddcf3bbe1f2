"""Phone calls: the record of a call of kind ``phone`` and its placement.

callgate has no telephony transport yet (a SIP trunk or Twilio arrives with a later issue). Until one is
configured, placing a phone call writes the call and its phone side, then fails it at once with the end
reason ``telephony_unavailable`` — a kept record with a clear reason, never a lost call or a 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain import calls
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


async def place_phone_call(
    session: AsyncSession, *, team_id: str, spec: NewPhoneCall, now: datetime, join_deadline: datetime
) -> tuple[Call, PhoneCall]:
    """Create an outbound phone call from one of the team's numbers and try to place it.

    Raises :class:`BadRequest` if ``from_number`` is not a number the team registered.
    """
    number = await find_team_number(session, team_id=team_id, number=spec.from_number)
    if number is None:
        raise BadRequest(
            f"from_number {spec.from_number} is not one of your phone numbers "
            "(register it with POST /v1/phone-numbers)"
        )
    call = await calls.create_call(
        session,
        team_id=team_id,
        spec=calls.NewCall(
            agent_id=spec.agent_id,
            transport=PHONE_TRANSPORT,
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
    # The one place that will dial once telephony exists; until then the attempt fails, on the record.
    await calls.transition(
        session,
        call=call,
        to=CallStatus.FAILED,
        reason=EndReason.TELEPHONY_UNAVAILABLE,
        now=now,
        data={"message": NO_TELEPHONY},
    )
    return call, phone


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
