"""The store side of a live call, for the real-time layer (which never touches the database).

A caller's transport joins a call and gets back a :class:`CallPlan`: a frozen, plain description of
the call to run (its agent's settings, engine choices, turn detection, limits, variables). No ORM
object leaves this module. :class:`CallRecords` is the one service a live call writes through: marking
it in progress, its transcript turns and interim transcripts, its end.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select

from callgate.clock import Clock
from callgate.domain import calls, nodes, provider_credentials
from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.domain.sip_accounts import SipAccount, find_account
from callgate.errors import CallgateError, NotFound
from callgate.store.db import Database
from callgate.store.models import Agent, Call
from callgate.webhooks import outbox
from callgate.webhooks.events import EventType


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """What a call runs: one agent's settings as they were when the caller joined."""

    id: str
    prompt: str | None
    flow: dict[str, Any] | None
    initial_message: str | None
    stt: dict[str, Any] = field(default_factory=dict)
    llm: dict[str, Any] = field(default_factory=dict)
    tts: dict[str, Any] = field(default_factory=dict)
    turn_detection: dict[str, Any] = field(default_factory=dict)
    max_duration_s: int = 600
    silence_timeout_s: int = 60
    tools: tuple[dict[str, Any], ...] = ()
    """The agent's tool definitions (``http`` header values still sealed: only the executor opens them)."""
    language: str = "en"
    """BCP 47: what the caller speaks and the agent answers in."""
    credentials: dict[str, SecretStr] = field(default_factory=dict, repr=False)
    """The secrets of the provider credentials the engine settings name, by credential id."""


@dataclass(frozen=True, slots=True)
class CallPlan:
    """A joined call, ready to run (see the module docstring)."""

    call_id: str
    team_id: str
    kind: str
    transport: str
    mode: str
    agent: AgentPlan
    variables: dict[str, Any]
    """The agent's variables with the call's over them: what ``{{name}}`` placeholders render with."""
    data: dict[str, Any]
    """Data gathered so far (the session adds what the agent collects)."""


def plan_of(call: Call, agent: Agent, *, credentials: dict[str, str] | None = None) -> CallPlan:
    return CallPlan(
        call_id=call.id,
        team_id=call.team_id,
        kind=call.kind,
        transport=call.transport,
        mode=call.mode,
        agent=AgentPlan(
            id=agent.id,
            prompt=agent.prompt,
            flow=agent.flow,
            initial_message=agent.initial_message,
            stt=dict(agent.stt),
            llm=dict(agent.llm),
            tts=dict(agent.tts),
            turn_detection=dict(agent.turn_detection or {}),
            max_duration_s=agent.max_duration_s,
            silence_timeout_s=agent.silence_timeout_s,
            tools=tuple(agent.tools or ()),
            language=agent.language or "en",
            credentials={k: SecretStr(v) for k, v in (credentials or {}).items()},
        ),
        variables={**agent.variables, **call.variables},
        data=dict(call.data),
    )


class CallRecords:
    """Reads and writes of live calls, each one short transaction. Errors are :class:`CallgateError`."""

    def __init__(self, db: Database, clock: Clock, *, node_id: str | None = None) -> None:
        self._db = db
        self._clock = clock
        self.node_id = node_id
        """This node's id: calls joined here are held under its lease (``callgate.domain.nodes``)."""

    async def join(self, *, team_id: str, call_id: str) -> CallPlan:
        """created → connecting (the team's live-call cap checked), and the plan of the call to run.

        Raises ``ConcurrencyLimited``, ``NotFound`` or ``IllegalTransition`` (the call ended or is held).
        """
        now = self._clock.now()

        async def job(session: Any) -> CallPlan:
            call = await calls.join_call(
                session, team_id=team_id, call_id=call_id, now=now, node_id=self.node_id
            )
            agent = await session.get(Agent, call.agent_id)
            if agent is None:  # agents are soft-deleted, so this is a broken row, not a user mistake
                raise NotFound("the call's agent does not exist")
            secrets = await provider_credentials.resolve(
                session, team_id=team_id, settings=(agent.stt, agent.tts, agent.llm)
            )
            return plan_of(call, agent, credentials=secrets)

        return await self._db.write(job)

    async def fail(self, *, team_id: str, call_id: str, reason: EndReason) -> None:
        """The caller joined but no session ran: end the call with ``reason`` (best effort)."""
        now = self._clock.now()
        with contextlib.suppress(CallgateError):
            await self._db.write(
                lambda s: calls.finish_call(s, team_id=team_id, call_id=call_id, reason=reason, now=now)
            )

    async def mark_in_progress(self, *, team_id: str, call_id: str) -> bool:
        """connecting → in_progress. True if some destination wants ``transcript.partial`` events
        (decided once per call: destinations added mid-call get partials from the next call on)."""
        now = self._clock.now()

        async def job(session: Any) -> bool:
            call = await calls.get_call(session, team_id=team_id, call_id=call_id, for_update=True)
            await calls.transition(session, call=call, to=CallStatus.IN_PROGRESS, now=now)
            return await outbox.wanted(session, call=call, type_=EventType.TRANSCRIPT_PARTIAL)

        return await self._db.write(job)

    async def save_turn(self, *, call_id: str, fields: dict[str, Any]) -> None:
        await self._db.write(lambda s: calls.add_turn(s, call_id=call_id, fields=fields))

    async def provider_switched(self, *, team_id: str, call_id: str, data: dict[str, Any]) -> None:
        """A stage of the call moved to its next engine: a call event and a webhook."""
        now = self._clock.now()
        await self._db.write(
            lambda s: calls.add_event(
                s, team_id=team_id, call_id=call_id, type_=EventType.CALL_PROVIDER_SWITCHED.value, data=data,
                now=now,
            )
        )  # fmt: skip

    async def record_partial(self, *, team_id: str, call_id: str, text: str) -> None:
        now = self._clock.now()
        await self._db.write(
            lambda s: outbox.transcript_partial(s, team_id=team_id, call_id=call_id, text=text, now=now)
        )

    async def finish(
        self,
        *,
        team_id: str,
        call_id: str,
        reason: EndReason,
        data: dict[str, Any],
        recording_path: str | None,
    ) -> None:
        """The session is over: store what it gathered; end the call unless it ended elsewhere."""
        now = self._clock.now()
        await self._db.write(
            lambda s: calls.finish_call(
                s,
                team_id=team_id,
                call_id=call_id,
                reason=reason,
                now=now,
                data=data,
                recording_path=recording_path,
            )
        )

    async def ended_among(self, call_ids: list[str]) -> list[tuple[str, EndReason]]:
        """Those of ``call_ids`` that have ended (elsewhere), with their end reasons. One query."""
        if not call_ids:
            return []
        stmt = select(Call.id, Call.end_reason).where(
            Call.id.in_(call_ids), Call.status.in_((CallStatus.ENDED.value, CallStatus.FAILED.value))
        )
        async with self._db.read() as session:
            rows = (await session.execute(stmt)).all()
        return [(call_id, EndReason(reason) if reason else EndReason.API_REQUEST) for call_id, reason in rows]

    async def sweep_missed_joins(self) -> list[str]:
        """Fail calls nobody joined before their deadline (safe on several nodes at once)."""
        now = self._clock.now()
        return await self._db.write(lambda s: calls.sweep_missed_joins(s, now=now))

    async def end_orphaned_calls(self) -> list[str]:
        """End live calls whose node holds no lease (``node_lost``), with their webhooks."""
        now = self._clock.now()
        return await self._db.write(lambda s: nodes.end_orphaned_calls(s, now=now))

    async def renew_lease(self, lease_s: float) -> None:
        if self.node_id is not None:
            node_id, now = self.node_id, self._clock.now()
            await self._db.write(lambda s: nodes.renew(s, node_id=node_id, now=now, lease_s=lease_s))

    async def release_lease(self) -> None:
        if self.node_id is not None:
            node_id = self.node_id
            await self._db.write(lambda s: nodes.release(s, node_id=node_id))

    async def sip_account(self, username: str) -> SipAccount | None:
        """The SIP-over-WebSocket credentials whose username is ``username`` (see ``sip_accounts``)."""
        async with self._db.read() as session:
            return await find_account(session, username=username)
