"""Read models for the dashboard: calls searched and paged, the overview's figures, live calls, keys."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain.calls import percentile
from callgate.domain.lifecycle import CallStatus
from callgate.store.models import Agent, ApiKey, Call, TranscriptTurn

LIVE = (CallStatus.CREATED.value, CallStatus.CONNECTING.value, CallStatus.IN_PROGRESS.value)


@dataclass(frozen=True, slots=True)
class CallFilter:
    status: str | None = None
    end_reason: str | None = None
    agent_id: str | None = None
    kind: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    text: str | None = None
    """Words that occur in the call's transcript (case-insensitive)."""


@dataclass(frozen=True, slots=True)
class CallPage:
    calls: list[Call]
    total: int
    page: int
    pages: int


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(team_id: str, f: CallFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Call.team_id == team_id]
    for column, value in (
        (Call.status, f.status),
        (Call.end_reason, f.end_reason),
        (Call.agent_id, f.agent_id),
        (Call.kind, f.kind),
    ):
        if value:
            where.append(column == value)
    if f.created_after is not None:
        where.append(Call.created_at >= f.created_after)
    if f.created_before is not None:
        where.append(Call.created_at < f.created_before)
    if f.text:
        said = select(TranscriptTurn.call_id).where(TranscriptTurn.text.ilike(_like(f.text), escape="\\"))
        where.append(Call.id.in_(said))
    return where


async def search_calls(
    session: AsyncSession, *, team_id: str, filters: CallFilter, page: int, per_page: int
) -> CallPage:
    """Newest first, one numbered page of the calls that match ``filters``."""
    where = _where(team_id, filters)
    total = int((await session.execute(select(func.count()).select_from(Call).where(*where))).scalar_one())
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    stmt = (
        select(Call)
        .where(*where)
        .order_by(Call.created_at.desc(), Call.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return CallPage(calls=list((await session.execute(stmt)).scalars()), total=total, page=page, pages=pages)


async def agent_names(session: AsyncSession, *, team_id: str) -> dict[str, str]:
    """Every agent of the team (deleted ones too: old calls name them) by id."""
    rows = await session.execute(select(Agent.id, Agent.name).where(Agent.team_id == team_id))
    return {id_: name for id_, name in rows.all()}


async def live_calls(session: AsyncSession, *, team_id: str) -> list[Call]:
    stmt = (
        select(Call)
        .where(Call.team_id == team_id, Call.status.in_(LIVE))
        .order_by(Call.created_at.desc())
        .limit(200)
    )
    return list((await session.execute(stmt)).scalars())


async def list_keys(session: AsyncSession, *, team_id: str) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.team_id == team_id).order_by(ApiKey.created_at.desc())
    return list((await session.execute(stmt)).scalars())


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    calls: int
    p50_ms: int | None
    p95_ms: int | None


@dataclass(frozen=True, slots=True)
class Overview:
    days: list[Day]
    end_reasons: list[tuple[str, int]]
    total: int
    live: int


async def overview(session: AsyncSession, *, team_id: str, now: datetime, days: int = 14) -> Overview:
    """Calls per day, end reasons and agent-turn latency p50/p95 per day over the last ``days``."""
    since = datetime.combine((now - timedelta(days=days - 1)).date(), datetime.min.time(), now.tzinfo)
    rows = (
        await session.execute(
            select(Call.id, Call.created_at, Call.status, Call.end_reason).where(
                Call.team_id == team_id, Call.created_at >= since
            )
        )
    ).all()
    per_day: Counter[date] = Counter()
    reasons: Counter[str] = Counter()
    live = 0
    day_of: dict[str, date] = {}
    for call_id, created_at, status, end_reason in rows:
        per_day[created_at.date()] += 1
        day_of[call_id] = created_at.date()
        if end_reason:
            reasons[end_reason] += 1
        live += status in LIVE
    latencies: defaultdict[date, list[int]] = defaultdict(list)
    turns = await session.execute(
        select(TranscriptTurn.call_id, TranscriptTurn.total_ms)
        .join(Call, Call.id == TranscriptTurn.call_id)
        .where(
            Call.team_id == team_id,
            Call.created_at >= since,
            TranscriptTurn.role == "agent",
            TranscriptTurn.total_ms.is_not(None),
        )
    )
    for call_id, total_ms in turns.all():
        if total_ms is not None:
            latencies[day_of.get(call_id, since.date())].append(total_ms)
    out = []
    for offset in range(days):
        d = since.date() + timedelta(days=offset)
        values = latencies.get(d, [])
        out.append(Day(d, per_day[d], percentile(values, 50), percentile(values, 95)))
    return Overview(days=out, end_reasons=reasons.most_common(), total=len(rows), live=live)
