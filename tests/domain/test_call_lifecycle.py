"""The call state machine: legal transitions are applied and recorded as call events, illegal ones are
refused and change nothing; the join-deadline sweep fails calls nobody joined."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from callgate.domain import calls
from callgate.domain.lifecycle import CallStatus, EndReason, check_transition
from callgate.errors import ConcurrencyLimited, IllegalTransition
from callgate.store.db import Database
from callgate.store.models import Call, CallEvent
from tests.support.world import Team, World

S = CallStatus
# Written out here rather than imported, so a change to the table in src is a test failure.
LEGAL = {
    (S.CREATED, S.CONNECTING),
    (S.CREATED, S.ENDED),
    (S.CREATED, S.FAILED),
    (S.CONNECTING, S.IN_PROGRESS),
    (S.CONNECTING, S.ENDED),
    (S.CONNECTING, S.FAILED),
    (S.IN_PROGRESS, S.ENDED),
    (S.IN_PROGRESS, S.FAILED),
}
FAILURES = {
    EndReason.JOIN_DEADLINE_MISSED,
    EndReason.SERVER_ERROR,
    EndReason.CONCURRENCY_LIMIT,
    EndReason.TELEPHONY_UNAVAILABLE,
    EndReason.CARRIER_ERROR,  # busy, no_answer and declined are outcomes of a placed call: ended
    EndReason.NODE_LOST,  # a crash; node_shutdown (a drain that ran out of time) ends the call
}


def a_fitting_reason(to: CallStatus) -> EndReason | None:
    if to is S.FAILED:
        return EndReason.SERVER_ERROR
    if to is S.ENDED:
        return EndReason.CALLER_HANGUP
    return None


@pytest.mark.parametrize(("old", "new"), list(itertools.product(CallStatus, CallStatus)))
def test_transition_table(old: CallStatus, new: CallStatus) -> None:
    if (old, new) in LEGAL:
        check_transition(old, new, a_fitting_reason(new))
    else:
        with pytest.raises(IllegalTransition):
            check_transition(old, new, a_fitting_reason(new))


@pytest.mark.parametrize("reason", list(EndReason))
def test_end_reasons_decide_ended_or_failed(reason: EndReason) -> None:
    right, wrong = (S.FAILED, S.ENDED) if reason in FAILURES else (S.ENDED, S.FAILED)
    check_transition(S.IN_PROGRESS, right, reason)
    with pytest.raises(IllegalTransition):
        check_transition(S.IN_PROGRESS, wrong, reason)


def test_reasons_only_when_ending() -> None:
    with pytest.raises(IllegalTransition):
        check_transition(S.IN_PROGRESS, S.ENDED, None)
    with pytest.raises(IllegalTransition):
        check_transition(S.CREATED, S.FAILED, None)
    with pytest.raises(IllegalTransition):
        check_transition(S.CREATED, S.CONNECTING, EndReason.CALLER_HANGUP)


# --- on the database, through calls.transition --------------------------------------------------------


async def new_call(
    world: World, team: Team, *, now: datetime, deadline: timedelta = timedelta(seconds=60)
) -> str:
    spec = calls.NewCall(
        agent_id=team.agent_id, transport="websocket", mode="audio", variables={}, metadata={}
    )
    call = await world.runtime.db.write(
        lambda s: calls.create_call(s, team_id=team.id, spec=spec, now=now, join_deadline=now + deadline)
    )
    return call.id


async def move(
    world: World, team: Team, call_id: str, to: CallStatus, *, now: datetime, reason: EndReason | None = None
) -> Call:
    async def job(s):  # type: ignore[no-untyped-def]
        call = await calls.get_call(s, team_id=team.id, call_id=call_id, for_update=True)
        return await calls.transition(s, call=call, to=to, now=now, reason=reason, data={"by": "test"})

    result: Call = await world.runtime.db.write(job)
    return result


async def events(world: World, call_id: str) -> list[tuple[str, str | None, str | None, str | None]]:
    async with world.runtime.db.read() as s:
        rows = await s.execute(
            select(CallEvent.type, CallEvent.from_status, CallEvent.to_status, CallEvent.reason)
            .where(CallEvent.call_id == call_id)
            .order_by(CallEvent.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_a_whole_call_is_recorded(world: World) -> None:
    team = await world.team("acme")
    t0 = world.runtime.clock.now()
    call_id = await new_call(world, team, now=t0)
    await move(world, team, call_id, S.CONNECTING, now=t0 + timedelta(seconds=1))
    await move(world, team, call_id, S.IN_PROGRESS, now=t0 + timedelta(seconds=2))
    call = await move(
        world, team, call_id, S.ENDED, now=t0 + timedelta(seconds=62), reason=EndReason.AGENT_ENDED
    )

    assert (call.status, call.end_reason) == ("ended", "agent_ended")
    assert await events(world, call_id) == [
        ("call.created", None, "created", None),
        ("call.connecting", "created", "connecting", None),
        ("call.in_progress", "connecting", "in_progress", None),
        ("call.ended", "in_progress", "ended", "agent_ended"),
    ]
    r = await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())
    body = r.json()
    assert body["status"] == "ended" and body["end_reason"] == "agent_ended"
    assert body["connected_at"] and body["started_at"] and body["ended_at"]
    assert body["duration_s"] == pytest.approx(60.0)


ILLEGAL: list[tuple[list[tuple[CallStatus, EndReason | None]], CallStatus, EndReason | None]] = [
    ([], S.IN_PROGRESS, None),  # created → in_progress skips connecting
    ([], S.CREATED, None),
    ([(S.CONNECTING, None)], S.CONNECTING, None),
    ([(S.ENDED, EndReason.CALLER_HANGUP)], S.IN_PROGRESS, None),
    ([(S.ENDED, EndReason.CALLER_HANGUP)], S.FAILED, EndReason.SERVER_ERROR),
    ([(S.FAILED, EndReason.SERVER_ERROR)], S.ENDED, EndReason.CALLER_HANGUP),
    ([(S.CONNECTING, None)], S.FAILED, EndReason.CALLER_HANGUP),  # that reason means "ended"
    ([(S.CONNECTING, None)], S.ENDED, EndReason.JOIN_DEADLINE_MISSED),  # that one means "failed"
    ([(S.CONNECTING, None)], S.ENDED, None),  # no reason
]


async def test_illegal_transitions_change_nothing(world: World) -> None:
    team = await world.team("acme")
    now = world.runtime.clock.now()
    for path, to, reason in ILLEGAL:
        call_id = await new_call(world, team, now=now)
        for status, why in path:
            await move(world, team, call_id, status, now=now, reason=why)
        before = await events(world, call_id)
        with pytest.raises(IllegalTransition):
            await move(world, team, call_id, to, now=now, reason=reason)
        assert await events(world, call_id) == before
        async with world.runtime.db.read() as s:
            call = await s.get(Call, call_id)
        assert call is not None and call.status == (path[-1][0] if path else S.CREATED), (path, to)


async def test_join_checks_capacity_and_state(world: World) -> None:
    team = await world.team("small", max_live_calls=1)
    now = world.runtime.clock.now()
    first, second = await new_call(world, team, now=now), await new_call(world, team, now=now)
    await world.runtime.db.write(lambda s: calls.join_call(s, team_id=team.id, call_id=first, now=now))
    with pytest.raises(IllegalTransition):  # joining twice
        await world.runtime.db.write(lambda s: calls.join_call(s, team_id=team.id, call_id=first, now=now))
    with pytest.raises(ConcurrencyLimited):
        await world.runtime.db.write(lambda s: calls.join_call(s, team_id=team.id, call_id=second, now=now))


async def test_sweep_fails_calls_nobody_joined(world: World) -> None:
    team = await world.team("acme")
    now = world.runtime.clock.now()
    missed = [await new_call(world, team, now=now - timedelta(seconds=120)) for _ in range(3)]
    waiting = await new_call(world, team, now=now)  # deadline still ahead
    joined = await new_call(world, team, now=now - timedelta(seconds=120))
    await move(world, team, joined, S.CONNECTING, now=now - timedelta(seconds=100))

    assert sorted(await world.runtime.jobs.sweep_once()) == sorted(missed)
    assert await world.runtime.jobs.sweep_once() == []  # nothing left to do

    for call_id in missed:
        r = await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())
        body = r.json()
        assert (body["status"], body["end_reason"]) == ("failed", "join_deadline_missed")
        assert (await events(world, call_id))[-1] == (
            "call.failed",
            "created",
            "failed",
            "join_deadline_missed",
        )
    for call_id, status in ((waiting, "created"), (joined, "connecting")):
        r = await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())
        assert r.json()["status"] == status
    metrics = (await world.client.get("/metrics")).text
    assert 'callgate_calls_ended_total{reason="join_deadline_missed"} 3.0' in metrics


async def join(db: Database, team_id: str, call_id: str, now: datetime) -> Call:
    result: Call = await db.write(lambda s: calls.join_call(s, team_id=team_id, call_id=call_id, now=now))
    return result


async def test_live_call_cap_holds_across_nodes(world: World) -> None:
    """Two nodes joining calls of one team at the same moment must not both pass the cap check."""
    other_node = Database(world.runtime.db.url)
    await other_node.start()
    try:
        overshoots = 0
        for round_ in range(8):
            team = await world.team(f"cap-{round_}", max_live_calls=1)
            now = world.runtime.clock.now()
            first, second = await new_call(world, team, now=now), await new_call(world, team, now=now)
            results = await asyncio.gather(
                join(world.runtime.db, team.id, first, now),
                join(other_node, team.id, second, now),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, BaseException)]
            assert all(isinstance(r, ConcurrencyLimited) for r in refused), refused
            async with world.runtime.db.read() as s:
                overshoots += await calls.live_call_count(s, team_id=team.id) > 1
        assert overshoots == 0, f"the cap of 1 was exceeded in {overshoots} of 8 rounds"
    finally:
        await other_node.close()
