"""Creating calls: the write path of ``POST /v1/web-calls``, every dialect's create route, and phone calls.

Creating a call is the API's hottest write, so it skips the ORM's unit of work: its statements are Core
statements built once, and :func:`create_calls` takes *many* calls at a time (the group-commit writer
hands it every creation waiting, ``Database.write_many``). For a batch it runs

1. one query per distinct (team, agent, contact) asked for: the agent (not deleted, of the team), its
   ``webhook_url``, the contact (if one is named), the team's live-call cap, its live-call count and
   whether it is metered (has a credit balance);
2. one INSERT for all the calls, one for their ``call_event`` rows, and (``outbox.calls_created``) one
   for their ``call.created`` webhook events plus one for the events' deliveries,

in the transaction of the batch, so a call and its ``call.created`` event commit together or not at all.

The cap check takes no lock. A new call is ``created``, which does not count against the cap (only
``connecting`` and ``in_progress`` do), so creations cannot push a team over its cap and need not wait
for each other; the cap is enforced for real when a caller joins (``calls.join_call`` locks the team row
and counts again).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain import credits
from callgate.domain.contacts import create_contact
from callgate.domain.ids import new_id
from callgate.domain.lifecycle import LIVE, CallStatus
from callgate.errors import CallgateError, ConcurrencyLimited, NotFound
from callgate.store.models import Agent, Call, CallEvent, Contact, Team, table
from callgate.store.models_dialects import TeamCredit
from callgate.webhooks import outbox

__all__ = ["CreatedCall", "NewCall", "PendingCall", "create_calls"]


@dataclass(frozen=True, slots=True)
class NewCall:
    agent_id: str
    transport: str
    mode: str
    variables: dict[str, Any]
    metadata: dict[str, Any]
    contact_id: str | None = None
    kind: str = "web"
    dialect: str | None = None
    sip_auth: dict[str, Any] | None = None
    id: str | None = None
    webhook: dict[str, Any] | None = None
    """Per-call webhook destination: ``callgate.webhooks.targets.CallWebhook(...).stored()``."""
    new_contact: dict[str, Any] | None = None
    """Without ``contact_id``: create this contact (e.g. an anonymous visitor) with the call."""


@dataclass(frozen=True, slots=True)
class PendingCall:
    """One call to create: what :func:`create_calls` takes."""

    team_id: str
    spec: NewCall
    now: datetime
    join_deadline: datetime


@dataclass(frozen=True, slots=True)
class CreatedCall:
    """A call as it was created (status ``created``)."""

    id: str
    team_id: str
    agent_id: str
    contact_id: str | None
    kind: str
    transport: str
    mode: str
    status: str
    created_at: datetime
    join_deadline: datetime


@dataclass(slots=True)
class _Check:
    """What the check query found for one (team, agent, contact)."""

    agent_found: bool
    agent_url: str | None
    contact_found: bool
    cap: int
    live: int
    metered: bool
    refusal: CallgateError | None = field(default=None)


_team, _agent, _call, _contact = table(Team).c, table(Agent).c, table(Call).c, table(Contact).c
_CHECK = (
    select(
        _team.max_live_calls,
        _agent.id.label("agent_id"),
        _agent.webhook_url,
        exists()
        .where(_contact.id == bindparam("contact_id"), _contact.team_id == _team.id)
        .label("contact_found"),
        select(func.count())
        .where(_call.team_id == _team.id, _call.status.in_(LIVE))
        .scalar_subquery()
        .label("live"),
        exists().where(table(TeamCredit).c.team_id == _team.id).label("metered"),
    )
    .select_from(
        table(Team).outerjoin(
            table(Agent),
            and_(_agent.id == bindparam("agent_id"), _agent.team_id == _team.id, _agent.deleted_at.is_(None)),
        )
    )
    .where(_team.id == bindparam("team_id"))
)
_INSERT_CALLS = insert(table(Call))
_INSERT_CALL_EVENTS = insert(table(CallEvent))


async def _check(session: AsyncSession, *, team_id: str, agent_id: str, contact_id: str | None) -> _Check:
    params = {"team_id": team_id, "agent_id": agent_id, "contact_id": contact_id}
    row = (await session.execute(_CHECK, params)).one_or_none()
    if row is None:  # no such team: its agents do not exist either
        return _Check(False, None, False, 0, 0, False)
    return _Check(
        row.agent_id is not None, row.webhook_url, bool(row.contact_found), row.max_live_calls, row.live,
        bool(row.metered),
    )  # fmt: skip


def _refusal(found: _Check, spec: NewCall) -> CallgateError | None:
    """The first reason (in the order the API documents them) not to create the call."""
    if not found.agent_found:
        return NotFound(f"no agent with id {spec.agent_id!r}")
    if spec.contact_id is not None and not found.contact_found:
        return NotFound(f"no contact with id {spec.contact_id!r}")
    if found.live >= found.cap:
        return ConcurrencyLimited(f"the team already has {found.cap} live calls (its limit)")
    return None


async def create_calls(
    session: AsyncSession, pending: list[PendingCall]
) -> list[CreatedCall | CallgateError]:
    """Create ``pending`` calls, each with its ``call.created`` event and deliveries; for each, the call
    or the error refusing it (an unknown agent or contact: NotFound; the team at its live-call cap:
    ConcurrencyLimited; out of credits: InsufficientCredits). Nothing is written for a refused call."""
    checks: dict[tuple[str, str, str | None], _Check] = {}
    out: list[CreatedCall | CallgateError] = []
    rows: list[dict[str, Any]] = []
    created: list[tuple[Call, str | None]] = []
    for item in pending:
        spec = item.spec
        key = (item.team_id, spec.agent_id, spec.contact_id)
        if (found := checks.get(key)) is None:
            found = checks[key] = await _check(
                session, team_id=item.team_id, agent_id=spec.agent_id, contact_id=spec.contact_id
            )
            found.refusal = _refusal(found, spec)
            if found.refusal is None and found.metered:
                try:
                    await credits.check(session, team_id=item.team_id, now=item.now)
                except CallgateError as exc:
                    found.refusal = exc
        if found.refusal is not None:
            out.append(copy.copy(found.refusal))  # one exception object per caller
            continue
        contact_id = spec.contact_id
        if contact_id is None and spec.new_contact is not None:
            contact = await create_contact(
                session, team_id=item.team_id, fields=spec.new_contact, now=item.now
            )
            contact_id = contact.id
        row = _call_row(item, contact_id)
        rows.append(row)
        # A transient Call (never added to the session) to render the event's payload from.
        fields = {k: v for k, v in row.items() if k != "metadata"}
        created.append((Call(**fields, call_metadata=row["metadata"]), found.agent_url))
        out.append(
            CreatedCall(
                id=row["id"], team_id=item.team_id, agent_id=spec.agent_id, contact_id=contact_id,
                kind=spec.kind, transport=spec.transport, mode=spec.mode, status=row["status"],
                created_at=item.now, join_deadline=item.join_deadline,
            )
        )  # fmt: skip
    if rows:
        await session.execute(_INSERT_CALLS, rows)
        events = [_created_event(row) for row in rows]
        await session.execute(_INSERT_CALL_EVENTS, events)
        await outbox.calls_created(session, created=created)
    return out


def _call_row(item: PendingCall, contact_id: str | None) -> dict[str, Any]:
    spec = item.spec
    return {
        "id": spec.id or new_id("call"),
        "team_id": item.team_id,
        "agent_id": spec.agent_id,
        "contact_id": contact_id,
        "kind": spec.kind,
        "transport": spec.transport,
        "mode": spec.mode,
        "status": CallStatus.CREATED.value,
        "end_reason": None,
        "dialect": spec.dialect,
        "variables": spec.variables,
        "metadata": spec.metadata,
        "data": {},
        "recording_path": None,
        "sip_auth": spec.sip_auth,
        "webhook": spec.webhook,
        "analysis": None,
        "node_id": None,
        "created_at": item.now,
        "join_deadline": item.join_deadline,
        "connected_at": None,
        "started_at": None,
        "ended_at": None,
    }


def _created_event(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "call_id": call["id"],
        "type": "call.created",
        "from_status": None,
        "to_status": call["status"],
        "reason": None,
        "data": {},
        "created_at": call["created_at"],
    }
