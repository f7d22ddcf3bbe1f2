"""Twilio phone calls on the record: which number answers, the calls' rows, and Twilio's call statuses.

A Twilio call is a call of kind ``phone`` and transport ``twilio`` with its phone side
(:class:`~callgate.store.models_telephony.PhoneCall`); Twilio's Call SID is kept in the call's data as
``twilio_call_sid`` (so it shows in the API, to find the call in Twilio's console). The account that
carries a call is the carrier of the team's number it was placed from or arrived at.

The real-time side (``realtime/twilio/``) uses :class:`TwilioRecords`; every function hands back plain
frozen dataclasses. The carrier's auth token leaves this module only inside :class:`TwilioAccount`,
for the signature check and the REST requests that need it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from callgate.clock import Clock
from callgate.domain import calls
from callgate.domain.carriers import normalize_number
from callgate.domain.lifecycle import CallStatus, EndReason, terminal_status
from callgate.domain.telephony import Dial, NewPhoneCall, prepare_phone_call
from callgate.errors import BadRequest, CallgateError
from callgate.store.db import Database
from callgate.store.models import Call, PhoneNumber
from callgate.store.models_telephony import Carrier, PhoneCall

__all__ = [
    "STATUS_END_REASONS",
    "TRANSPORT",
    "TwilioAccount",
    "TwilioCall",
    "TwilioRecords",
    "TwilioRoute",
    "apply_status",
    "create_inbound_call",
    "find_call",
    "route_number",
]

TRANSPORT = "twilio"
SID_KEY = "twilio_call_sid"

STATUS_END_REASONS: dict[str, EndReason] = {
    "busy": EndReason.BUSY,
    "no-answer": EndReason.NO_ANSWER,
    "failed": EndReason.CARRIER_ERROR,
    "canceled": EndReason.API_REQUEST,
    "completed": EndReason.CALLER_HANGUP,
}
"""Twilio's final ``CallStatus`` values and the end reason each gives a call that has not ended yet.
``queued``, ``initiated``, ``ringing`` and ``in-progress`` change nothing: the media stream joins the
call when it is answered."""


@dataclass(frozen=True, slots=True)
class TwilioAccount:
    carrier_id: str
    account_sid: str
    auth_token: str

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"TwilioAccount(carrier_id={self.carrier_id!r}, account_sid={self.account_sid!r})"


@dataclass(frozen=True, slots=True)
class TwilioRoute:
    """Who answers calls to one of a team's numbers on a Twilio carrier."""

    team_id: str
    phone_number_id: str
    number: str
    agent_id: str
    account: TwilioAccount


@dataclass(frozen=True, slots=True)
class TwilioCall:
    call_id: str
    team_id: str
    status: CallStatus
    call_sid: str | None
    account: TwilioAccount | None
    """None when the number or its carrier has since been removed."""
    from_number: str
    to_number: str
    joined: bool = False
    """A media stream joined the call (it went created → connecting)."""


def _account(carrier: Carrier | None) -> TwilioAccount | None:
    if carrier is None or carrier.kind != "twilio" or carrier.auth_token is None:
        return None
    sid = (carrier.config or {}).get("account_sid")
    return TwilioAccount(carrier.id, str(sid), carrier.auth_token) if sid else None


async def route_number(session: AsyncSession, *, number: str) -> TwilioRoute | None:
    """The route for calls to ``number`` (E.164, ``+`` optional): a number with an agent on a Twilio
    carrier; None otherwise."""
    e164 = normalize_number(number)
    if e164 is None:
        return None
    stmt = (
        select(PhoneNumber, Carrier)
        .join(Carrier, Carrier.id == PhoneNumber.carrier_id)
        .where(PhoneNumber.number == e164, Carrier.kind == "twilio", PhoneNumber.agent_id.is_not(None))
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    phone_number, carrier = row
    account = _account(carrier)
    if account is None or phone_number.agent_id is None:
        return None
    return TwilioRoute(
        team_id=phone_number.team_id,
        phone_number_id=phone_number.id,
        number=phone_number.number,
        agent_id=phone_number.agent_id,
        account=account,
    )


def _set_sid(call: Call, call_sid: str) -> None:
    call.data = {**(call.data or {}), SID_KEY: call_sid}
    flag_modified(call, "data")


async def create_inbound_call(
    session: AsyncSession,
    *,
    route: TwilioRoute,
    from_number: str,
    call_sid: str,
    now: datetime,
    join_deadline: datetime,
) -> str:
    """The call (created) of a Twilio call to ``route``'s number; its id. Raises
    ``ConcurrencyLimited``, ``InsufficientCredits`` or ``NotFound`` (the agent is gone)."""
    call = await calls.create_call(
        session,
        team_id=route.team_id,
        spec=calls.NewCall(
            agent_id=route.agent_id,
            transport=TRANSPORT,
            mode="audio",
            variables={},
            metadata={},
            kind="phone",
        ),
        now=now,
        join_deadline=join_deadline,
    )
    _set_sid(call, call_sid)
    session.add(
        PhoneCall(
            call_id=call.id,
            team_id=route.team_id,
            direction="inbound",
            from_number=from_number[:32],
            to_number=route.number,
            phone_number_id=route.phone_number_id,
            options={},
            created_at=now,
        )
    )
    await session.flush()
    return call.id


async def find_call(session: AsyncSession, *, call_id: str) -> TwilioCall | None:
    """The Twilio call ``call_id`` (any team: the caller is authenticated by Twilio's signature or a
    call token); None for other calls."""
    row = (
        await session.execute(
            select(Call, PhoneCall)
            .join(PhoneCall, PhoneCall.call_id == Call.id)
            .where(Call.id == call_id, Call.transport == TRANSPORT)
        )
    ).one_or_none()
    if row is None:
        return None
    call, phone = row
    carrier = None
    if phone.phone_number_id is not None:
        number = await session.get(PhoneNumber, phone.phone_number_id)
        if number is not None and number.carrier_id is not None:
            carrier = await session.get(Carrier, number.carrier_id)
    sid = (call.data or {}).get(SID_KEY)
    return TwilioCall(
        call_id=call.id,
        team_id=call.team_id,
        status=CallStatus(call.status),
        call_sid=str(sid) if sid else None,
        account=_account(carrier),
        from_number=phone.from_number,
        to_number=phone.to_number,
        joined=call.connected_at is not None,
    )


async def record_sid(session: AsyncSession, *, call_id: str, call_sid: str) -> None:
    call = (await session.execute(select(Call).where(Call.id == call_id).with_for_update())).scalar_one()
    _set_sid(call, call_sid)
    await session.flush()


async def apply_status(
    session: AsyncSession, *, call_id: str, status: str, now: datetime
) -> EndReason | None:
    """Apply Twilio's ``CallStatus`` for ``call_id``: a final status ends a call that has not ended
    (see :data:`STATUS_END_REASONS`). Returns the end reason when it ended a call that had joined
    (its session, wherever it runs, must be told to end)."""
    reason = STATUS_END_REASONS.get(status)
    if reason is None:
        return None
    call = (await session.execute(select(Call).where(Call.id == call_id).with_for_update())).scalar_one()
    old = CallStatus(call.status)
    if old.is_terminal:
        return None
    if old is CallStatus.CREATED and reason is EndReason.CALLER_HANGUP:
        reason = EndReason.TRANSPORT_LOST  # answered and hung up, but the media stream never came
    await calls.transition(session, call=call, to=terminal_status(reason), reason=reason, now=now)
    return reason if old.is_live else None


class TwilioRecords:
    """The reads and writes the Twilio transport makes, each one short transaction."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def route(self, number: str) -> TwilioRoute | None:
        async with self._db.read() as session:
            return await route_number(session, number=number)

    async def create_inbound(
        self, route: TwilioRoute, *, from_number: str, call_sid: str, join_within_s: float
    ) -> str:
        now = self._clock.now()
        deadline = now + timedelta(seconds=join_within_s)
        return await self._db.write(
            lambda s: create_inbound_call(
                s, route=route, from_number=from_number, call_sid=call_sid, now=now, join_deadline=deadline
            )
        )

    async def create_outbound(self, *, team_id: str, spec: NewPhoneCall, join_within_s: float) -> Dial:
        """Write an outbound call from one of the team's numbers on a Twilio carrier (the one path
        every phone call is written by: :func:`~callgate.domain.telephony.prepare_phone_call`)."""
        now = self._clock.now()
        deadline = now + timedelta(seconds=join_within_s)

        async def job(session: AsyncSession) -> Dial:
            _, _, dial = await prepare_phone_call(
                session,
                team_id=team_id,
                spec=spec,
                now=now,
                join_deadline=deadline,
                dialable=frozenset({"twilio"}),
            )
            if dial is None or dial.carrier.kind != "twilio":
                raise BadRequest(
                    f"from_number {spec.from_number} is not one of your numbers on a Twilio carrier"
                )
            return dial

        return await self._db.write(job)

    async def call(self, call_id: str) -> TwilioCall | None:
        async with self._db.read() as session:
            return await find_call(session, call_id=call_id)

    async def record_sid(self, call_id: str, call_sid: str) -> None:
        await self._db.write(lambda s: record_sid(s, call_id=call_id, call_sid=call_sid))

    async def apply_status(self, call_id: str, status: str) -> EndReason | None:
        now = self._clock.now()
        return await self._db.write(lambda s: apply_status(s, call_id=call_id, status=status, now=now))

    async def fail(self, *, team_id: str, call_id: str, reason: EndReason, detail: str) -> None:
        """The call could not be placed: end it with ``reason`` (best effort)."""
        now = self._clock.now()
        data: dict[str, Any] = {"message": detail}

        async def job(session: AsyncSession) -> None:
            call = await calls.get_call(session, team_id=team_id, call_id=call_id, for_update=True)
            if not CallStatus(call.status).is_terminal:
                to = terminal_status(reason)
                await calls.transition(session, call=call, to=to, reason=reason, now=now, data=data)

        with contextlib.suppress(CallgateError):
            await self._db.write(job)
