"""Post-call analysis: a summary and extracted data for every call that ended after it started.

The job is written in the transaction that ends the call (:mod:`callgate.webhooks.outbox`); an
:class:`AnalysisWorker` on any node claims it (``FOR UPDATE SKIP LOCKED`` plus a lease, like webhook
deliveries), stores the result on ``call.analysis`` and emits ``call.analyzed`` in the same commit.

* Flow agents need no LLM: the summary is built from the flow's collected slots and ``set`` values
  (the call's ``data``) and the outcome (how the call ended).
* Prompt agents ask the agent's LLM, which answers through a ``record_analysis`` tool whose parameters
  are a ``summary`` and the agent's analysis plan's JSON schema (``/v1/agents/{id}/analysis-plan``).
  A missing LLM or an answer that does not fit the schema is retried; after the last attempt the
  analysis is stored with ``status: "failed"`` and its error, and ``call.analyzed`` still goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.clock import Clock
from callgate.domain.agents import get_agent
from callgate.errors import CallgateError, NotFound, ProviderError
from callgate.flows.text import render
from callgate.pipeline.interfaces import LLM, ChatMessage, ToolSpec
from callgate.store.db import Database
from callgate.store.models import Agent, Call, TranscriptTurn
from callgate.store.models_webhooks import AnalysisJob, AnalysisPlan
from callgate.webhooks import outbox
from callgate.webhooks.events import EventType
from callgate.webhooks.schema_check import check_value

__all__ = ["AnalysisWorker", "delete_plan", "flow_analysis", "get_plan", "llm_analysis", "put_plan"]

log = logging.getLogger(__name__)

OUTCOMES = {
    "agent_ended": "completed",
    "caller_hangup": "caller_hung_up",
    "transferred": "transferred",
    "max_duration": "timed_out",
    "silence_timeout": "timed_out",
}
SYSTEM = (
    "You analyse a finished phone or web call between an AI agent and a caller. Call the "
    "record_analysis tool exactly once: a two- or three-sentence summary of what happened, and the "
    "requested data taken only from the transcript (use null when the transcript does not say)."
)


def _outcome(call: Call) -> str:
    return OUTCOMES.get(call.end_reason or "", call.end_reason or call.status)


def flow_analysis(call: Call, agent: Agent) -> dict[str, Any]:
    """Summary and data of a flow call, from what the flow collected and how the call ended."""
    data = dict(call.data)
    slots = (agent.flow or {}).get("slots", {})
    named = [f"{name.replace('_', ' ')}: {data[name]}" for name in slots if data.get(name) is not None]
    other = [f"{k.replace('_', ' ')}: {v}" for k, v in data.items() if k not in slots and v is not None]
    outcome = _outcome(call)
    summary = f"The call with {agent.name} ended ({outcome.replace('_', ' ')})."
    if named or other:
        summary += " Collected " + "; ".join(named + other) + "."
    else:
        summary += " Nothing was collected."
    return {"status": "completed", "source": "flow", "summary": summary, "data": data, "outcome": outcome}


def _transcript(turns: list[TranscriptTurn]) -> str:
    lines = [f"{'Agent' if t.role == 'agent' else 'Caller'}: {t.text}" for t in turns if t.spoken]
    return "\n".join(lines) or "(no words were exchanged)"


async def llm_analysis(
    llm: LLM, *, call: Call, agent: Agent, turns: list[TranscriptTurn], plan: AnalysisPlan | None
) -> dict[str, Any]:
    """Ask ``llm`` for the summary and the plan's data; raises ProviderError on an unusable answer."""
    schema = plan.data_schema if plan else {"type": "object", "properties": {}}
    tool = ToolSpec(
        name="record_analysis",
        description="Record the analysis of the call.",
        parameters={
            "type": "object",
            "properties": {"summary": {"type": "string"}, "data": schema},
            "required": ["summary", "data"],
        },
    )
    instructions = plan.instructions if plan and plan.instructions else ""
    values = {k: str(v) for k, v in {**agent.variables, **call.variables}.items()}
    messages = [
        ChatMessage(
            role="system", content=SYSTEM + ("\n\n" + render(instructions, values) if instructions else "")
        ),
        ChatMessage(
            role="user",
            content=f"The agent's instructions were:\n{render(agent.prompt or '', values)}\n\n"
            f"Transcript:\n{_transcript(turns)}\n\nThe call ended: {_outcome(call)}.",
        ),
    ]
    text: list[str] = []
    arguments: dict[str, Any] | None = None
    async for chunk in llm.chat(messages, tools=(tool,)):
        text.append(chunk.text)
        for tool_call in chunk.tool_calls:
            if tool_call.name == tool.name:
                arguments = tool_call.arguments
    if arguments is None:  # models without tools may answer with the JSON object as text
        try:
            arguments = json.loads("".join(text).strip().removeprefix("```json").strip("`\n "))
        except json.JSONDecodeError as exc:
            raise ProviderError("the LLM did not call record_analysis nor answer with JSON") from exc
    if not isinstance(arguments, dict) or not isinstance(arguments.get("summary"), str):
        raise ProviderError("the LLM's analysis has no summary")
    data = arguments.get("data") or {}
    problems = check_value(data, schema)
    if problems:
        raise ProviderError("the LLM's data does not fit the analysis plan: " + "; ".join(problems[:5]))
    return {
        "status": "completed",
        "source": "llm",
        "summary": arguments["summary"],
        "data": data,
        "outcome": _outcome(call),
    }


class AnalysisWorker:
    """Runs due analysis jobs. ``llm_for(agent)`` builds the agent's LLM (the engine registry's)."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        llm_for: Any,
        max_attempts: int = 3,
        retry_s: float = 30.0,
        concurrency: int = 4,
        poll_s: float = 1.0,
    ):
        self._db, self._clock, self._llm_for = db, clock, llm_for
        self._max_attempts, self._retry_s = max_attempts, retry_s
        self.concurrency, self.poll_s = concurrency, poll_s
        self.lease_s = 120.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._analyse_forever(), name="post-call-analysis")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def claim(self, *, limit: int) -> list[tuple[str, int]]:
        """Take up to ``limit`` due jobs for this node (a lease: a crashed node's jobs come back)."""
        now = self._clock.now()
        return await self._db.write(lambda s: self._claim(s, now=now, limit=limit))

    async def analyse(self, call_id: str, attempt: int) -> None:
        """Run one claimed job to its end: stored, postponed, or stored as failed."""
        await self._analyse(call_id, attempt)

    async def _analyse_forever(self) -> None:
        """Keep up to ``analysis_concurrency`` jobs running: an LLM that takes 20 s to summarise one
        call does not hold up the others. Jobs cut short by a stop are taken again when their lease
        ends."""
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                free = self.concurrency - len(running)
                jobs: list[tuple[str, int]] = []
                if free > 0:
                    try:
                        jobs = await self.claim(limit=free)
                    except CallgateError:
                        log.warning("could not claim analysis jobs; will retry", exc_info=True)
                for call_id, attempt in jobs:
                    running.add(asyncio.create_task(self.analyse(call_id, attempt), name="analysis"))
                if not running:
                    await asyncio.sleep(self.poll_s)
                    continue
                done, running = await asyncio.wait(
                    running, timeout=None if len(running) >= self.concurrency else self.poll_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
                for task in done:
                    if task.exception() is not None:
                        log.error("post-call analysis failed", exc_info=task.exception())
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)

    async def _claim(self, session: AsyncSession, *, now: datetime, limit: int) -> list[tuple[str, int]]:
        stmt = (
            select(AnalysisJob)
            .where(AnalysisJob.status == "pending", AnalysisJob.next_attempt_at <= now)
            .order_by(AnalysisJob.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        out = []
        for job in (await session.execute(stmt)).scalars():
            job.attempts += 1
            job.next_attempt_at = now + timedelta(seconds=self.lease_s)
            job.updated_at = now
            out.append((job.call_id, job.attempts))
        await session.flush()
        return out

    async def _analyse(self, call_id: str, attempt: int) -> None:
        async with self._db.read() as s:
            call = await s.get(Call, call_id)
            agent = await s.get(Agent, call.agent_id) if call else None
            plan = await s.get(AnalysisPlan, call.agent_id) if call else None
            turns = list(
                (
                    await s.execute(
                        select(TranscriptTurn)
                        .where(TranscriptTurn.call_id == call_id)
                        .order_by(TranscriptTurn.seq)
                    )
                ).scalars()
            )
        if call is None or agent is None:
            return
        error: str | None = None
        result: dict[str, Any] | None = None
        try:
            if agent.flow is not None:
                result = flow_analysis(call, agent)
            else:
                result = await llm_analysis(
                    self._llm_for(agent), call=call, agent=agent, turns=turns, plan=plan
                )
        except CallgateError as exc:
            error = exc.detail
            log.warning(
                "analysis of %s failed (attempt %d): %s", call_id, attempt, error, extra={"call": call_id}
            )
        if result is None and attempt < self._max_attempts:
            retry_at = self._clock.now() + timedelta(seconds=self._retry_s * attempt)
            await self._db.write(lambda s: self._postpone(s, call_id, attempt, retry_at, error))
            return
        if result is None:
            result = {
                "status": "failed",
                "source": "llm",
                "summary": None,
                "data": {},
                "outcome": _outcome(call),
                "error": error,
            }
        now = self._clock.now()
        result["analyzed_at"] = now.isoformat().replace("+00:00", "Z")
        final = result
        await self._db.write(lambda s: self._store(s, call_id, attempt, final, now))

    @staticmethod
    async def _postpone(s: AsyncSession, call_id: str, attempt: int, at: datetime, error: str | None) -> None:
        job = await s.get(AnalysisJob, call_id)
        if job is not None and job.attempts == attempt:
            job.next_attempt_at, job.last_error = at, (error or "")[:500]

    @staticmethod
    async def _store(
        s: AsyncSession, call_id: str, attempt: int, result: dict[str, Any], now: datetime
    ) -> None:
        job = await s.get(AnalysisJob, call_id, with_for_update=True)
        call = await s.get(Call, call_id, with_for_update=True)
        if job is None or call is None or job.status != "pending" or job.attempts != attempt:
            return  # another node finished it after our lease ran out
        job.status, job.updated_at = "done", now
        call.analysis = result
        await s.flush()
        await outbox.record(s, call=call, type_=EventType.CALL_ANALYZED, now=now)


# ------------------------------------------------------------------------------- analysis plans


async def put_plan(
    session: AsyncSession,
    *,
    team_id: str,
    agent_id: str,
    data_schema: dict[str, Any],
    instructions: str | None,
    now: datetime,
) -> AnalysisPlan:
    """Set what analysis extracts for ``agent_id``'s calls (the agent must be the team's)."""
    await get_agent(session, team_id=team_id, agent_id=agent_id)
    plan = await session.get(AnalysisPlan, agent_id, with_for_update=True)
    if plan is None:
        plan = AnalysisPlan(agent_id=agent_id, team_id=team_id, created_at=now)
        session.add(plan)
    plan.data_schema, plan.instructions, plan.updated_at = data_schema, instructions, now
    await session.flush()
    return plan


async def get_plan(session: AsyncSession, *, team_id: str, agent_id: str) -> AnalysisPlan:
    await get_agent(session, team_id=team_id, agent_id=agent_id)
    plan = await session.get(AnalysisPlan, agent_id)
    if plan is None:
        raise NotFound(f"agent {agent_id!r} has no analysis plan")
    return plan


async def delete_plan(session: AsyncSession, *, team_id: str, agent_id: str) -> None:
    plan = await get_plan(session, team_id=team_id, agent_id=agent_id)
    await session.delete(plan)
    await session.flush()
