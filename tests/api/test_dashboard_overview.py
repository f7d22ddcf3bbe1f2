"""The overview's figures against calls whose dates, end reasons and turn latencies are known: calls
per day, end reasons and agent-turn latency p50/p95 per day (nearest rank), from the domain and as
the page shows them. The expected figures are worked out by hand below, not by the code under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from callgate.clock import utcnow
from callgate.domain import calls, reports
from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.domain.users import Role
from tests.support.dashboard import HTML, client_of, make_user, sign_in
from tests.support.live import MovableClock
from tests.support.world import Team, World, make_settings, open_world

NOW = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)


async def known_call(
    world: World,
    team: Team,
    *,
    days_ago: int,
    reason: EndReason | None,
    agent_ms: tuple[int, ...] = (),
    user_ms: tuple[int, ...] = (),
) -> None:
    """A call created ``days_ago`` before NOW at 09:00, with agent (and caller) turns of these totals,
    ended for ``reason`` (None: still in progress; join_deadline_missed: never joined)."""
    created = datetime.combine((NOW - timedelta(days=days_ago)).date(), datetime.min.time(), UTC)
    created += timedelta(hours=9)

    async def job(s: AsyncSession) -> None:
        spec = calls.NewCall(
            agent_id=team.agent_id, transport="websocket", mode="audio", variables={}, metadata={}
        )
        call = await calls.create_call(
            s, team_id=team.id, spec=spec, now=created, join_deadline=created + timedelta(minutes=1)
        )
        if reason is EndReason.JOIN_DEADLINE_MISSED:
            await calls.transition(s, call=call, to=CallStatus.FAILED, reason=reason, now=created)
            return
        await calls.join_call(s, team_id=team.id, call_id=call.id, now=created)
        await calls.transition(s, call=call, to=CallStatus.IN_PROGRESS, now=created)
        turns = [("agent", ms) for ms in agent_ms] + [("user", ms) for ms in user_ms]
        for i, (role, ms) in enumerate(turns):
            at = created + timedelta(seconds=5 * i)
            fields = {"role": role, "text": f"turn {i}", "interrupted": False, "started_at": at}
            await calls.add_turn(s, call_id=call.id, fields=fields | {"ended_at": at, "total_ms": ms})
        if reason is not None:
            await calls.finish_call(s, team_id=team.id, call_id=call.id, reason=reason, now=created)

    await world.runtime.db.write(job)


async def test_overview_figures_from_known_calls(tmp_path: Path, database_url: str) -> None:
    clock = MovableClock()
    clock.ahead_s = (NOW - utcnow()).total_seconds()
    async with open_world(make_settings(tmp_path, database_url), clock=clock) as world:
        team, other = await world.team("acme"), await world.team("other")
        # Two days ago: two calls, one never joined.
        await known_call(world, team, days_ago=2, reason=EndReason.CALLER_HANGUP, agent_ms=(600, 400))
        await known_call(world, team, days_ago=2, reason=EndReason.JOIN_DEADLINE_MISSED)
        # Today: three calls, one still live; the caller's turn latency does not count.
        await known_call(
            world, team, days_ago=0, reason=EndReason.AGENT_ENDED, agent_ms=(300, 100, 1000, 200, 400),
            user_ms=(99_999,),
        )  # fmt: skip
        await known_call(world, team, days_ago=0, reason=EndReason.CALLER_HANGUP, agent_ms=(500,))
        await known_call(world, team, days_ago=0, reason=None, agent_ms=(700,))
        # Outside the 14 days, and another team's: neither counts.
        await known_call(world, team, days_ago=14, reason=EndReason.MAX_DURATION, agent_ms=(5000,))
        await known_call(world, other, days_ago=0, reason=EndReason.SERVER_ERROR, agent_ms=(9000,))

        async with world.runtime.db.read() as s:
            figures = await reports.overview(s, team_id=team.id, now=NOW)
        days = {d.day.isoformat(): (d.calls, d.p50_ms, d.p95_ms) for d in figures.days}
        assert (min(days), max(days), len(days)) == ("2026-11-27", "2026-12-10", 14)
        assert days["2026-12-08"] == (2, 400, 600)  # [400, 600]: ranks 1 and 2
        # [100, 200, 300, 400, 500, 700, 1000]: p50 rank ceil(3.5) = 4, p95 rank ceil(6.65) = 7
        assert days["2026-12-10"] == (3, 400, 1000)
        assert {d: v for d, v in days.items() if d not in ("2026-12-08", "2026-12-10")} == {
            d: (0, None, None) for d in days if d not in ("2026-12-08", "2026-12-10")
        }
        assert figures.end_reasons[0] == ("caller_hangup", 2)
        assert dict(figures.end_reasons) == {"caller_hangup": 2, "join_deadline_missed": 1, "agent_ended": 1}
        assert (figures.total, figures.live) == (5, 1)

        # The page shows the same figures (each chart mark's text alternative).
        await make_user(world.runtime, team.id, "m@example.com", Role.MEMBER)
        async with client_of(world) as c:
            await sign_in(c, "m@example.com")
            page = (await c.get("/dashboard", headers=HTML)).text
        assert '<strong id="total-calls">5</strong>' in page
        for mark in (
            "2026-12-08: 2 calls",
            "2026-12-09: 0 calls",
            "2026-12-10: 3 calls",
            "2026-12-08: p50 400 ms",
            "2026-12-08: p95 600 ms",
            "2026-12-10: p50 400 ms",
            "2026-12-10: p95 1000 ms",
        ):
            assert f"<title>{mark}</title>" in page, mark
        assert "p50 None" not in page and "2026-11-26" not in page
        assert "<tr><td>caller_hangup</td><td>2</td></tr>" in page
        assert "<tr><td>agent_ended</td><td>1</td></tr>" in page and "max_duration" not in page
