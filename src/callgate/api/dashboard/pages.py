"""The dashboard's pages (GET): server-rendered, team-scoped, readable by every role."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from callgate.api.dashboard import charts
from callgate.api.dashboard.session import PREFIX, Viewer, render
from callgate.api.deps import RuntimeDep
from callgate.api.recordings import recording_response
from callgate.domain import agents, calls, reports, users
from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.domain.recording_store import ByteRange
from callgate.domain.tools import public_tools
from callgate.providers.settings import stored_engine_settings
from callgate.webhooks import deliveries, endpoints

if TYPE_CHECKING:
    from callgate.store.models import Agent, Call

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PER_PAGE = 25


def agent_form_values(agent: Agent | None) -> dict[str, str]:
    """An agent's fields as the form's text boxes show them (JSON for the structured ones)."""

    def js(value: Any) -> str:
        return json.dumps(value, indent=2) if value else ""

    if agent is None:
        return {
            "name": "",
            "kind": "prompt",
            "prompt": "",
            "flow": "",
            "initial_message": "",
            "variables": "",
            "voice": "",
            "language": "",
            "stt": "",
            "llm": "",
            "tts": "",
            "turn_detection": "",
            "max_duration_s": "1800",
            "silence_timeout_s": "60",
            "webhook_url": "",
            "tools": "",
        }
    return {
        "name": agent.name,
        "kind": "flow" if agent.flow is not None else "prompt",
        "prompt": agent.prompt or "",
        "flow": js(agent.flow),
        "initial_message": agent.initial_message or "",
        "variables": js(agent.variables),
        "voice": agent.voice or "",
        "language": agent.language or "",
        "stt": js(stored_engine_settings("stt", agent.stt)),  # as run: ignored former keys left out
        "llm": js(agent.llm),
        "tts": js(agent.tts),
        "turn_detection": js(agent.turn_detection),
        "max_duration_s": str(agent.max_duration_s),
        "silence_timeout_s": str(agent.silence_timeout_s),
        "webhook_url": agent.webhook_url or "",
        "tools": js(public_tools(agent.tools)),  # header values as ********, never their value
    }


@router.get("")
async def overview(request: Request, viewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    async with runtime.db.read() as s:
        figures = await reports.overview(s, team_id=viewer.team_id, now=runtime.clock.now())
    return render(
        request,
        "overview.html",
        viewer=viewer,
        figures=figures,
        per_day=charts.calls_per_day(figures.days),
        latency=charts.latency_over_time(figures.days),
        chart=charts,
    )


@router.get("/agents")
async def agent_list(request: Request, viewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    async with runtime.db.read() as s:
        page = await agents.list_agents(s, team_id=viewer.team_id, limit=200, cursor=None)
    return render(request, "agents.html", viewer=viewer, agents=page.items)


@router.get("/agents/new")
async def agent_new(request: Request, viewer: Viewer) -> HTMLResponse:
    return render(request, "agent.html", viewer=viewer, agent=None, values=agent_form_values(None), errors={})


@router.get("/agents/{agent_id}")
async def agent_page(agent_id: str, request: Request, viewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    async with runtime.db.read() as s:
        agent = await agents.get_agent(s, team_id=viewer.team_id, agent_id=agent_id)
    return render(
        request, "agent.html", viewer=viewer, agent=agent, values=agent_form_values(agent), errors={}
    )


def _day(value: str | None, *, end: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        start = datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return None
    return start + timedelta(days=1) if end else start


@router.get("/calls")
async def call_list(
    request: Request,
    viewer: Viewer,
    runtime: RuntimeDep,
    status: str | None = None,
    end_reason: str | None = None,
    agent_id: str | None = None,
    kind: str | None = None,
    date_from: str | None = Query(default=None, alias="from"),
    date_to: str | None = Query(default=None, alias="to"),
    q: str | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    filters = reports.CallFilter(
        status=status or None,
        end_reason=end_reason or None,
        agent_id=agent_id or None,
        kind=kind or None,
        created_after=_day(date_from),
        created_before=_day(date_to, end=True),
        text=(q or "").strip()[:200] or None,
    )
    async with runtime.db.read() as s:
        found = await reports.search_calls(
            s, team_id=viewer.team_id, filters=filters, page=page, per_page=PER_PAGE
        )
        names = await reports.agent_names(s, team_id=viewer.team_id)
    query = {k: v for k, v in request.query_params.items() if k != "page" and v}
    return render(
        request,
        "calls.html",
        viewer=viewer,
        found=found,
        names=names,
        query=query,
        chosen={
            "status": status or "",
            "end_reason": end_reason or "",
            "agent_id": agent_id or "",
            "kind": kind or "",
            "from": date_from or "",
            "to": date_to or "",
            "q": q or "",
        },
        statuses=[s.value for s in CallStatus],
        reasons=[r.value for r in EndReason],
    )


_BARGE_IN_REASONS = {
    "noise": "noise, too short to be speech",
    "no_words": "speech with no words in it",
    "backchannel": "a backchannel",
    "slow_words": "the caller's words were slow to come",
    "long_speech": "the caller spoke at length",
    "words": "the caller's words",
    "continued": "the caller went on with the turn this answered (answered again with all the words)",
    "text": "a typed message",
    "turn": "the caller's next turn",
}
"""What each :class:`~callgate.pipeline.frames.BargeIn` reason means, as an agent turn shows it."""


def _offset(call: Call, when: datetime) -> float:
    start = call.started_at or call.connected_at or call.created_at
    return max(0.0, (when - start).total_seconds())


@router.get("/calls/{call_id}")
async def call_page(call_id: str, request: Request, viewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    async with runtime.db.read() as s:
        call = await calls.get_call(s, team_id=viewer.team_id, call_id=call_id)
        agent = await agents.agent_of_call(s, call=call)
        turns = await calls.list_turns(s, call_id=call.id)
        events = await calls.list_events(s, call_id=call.id)
        sent = await deliveries.list_deliveries(
            s, team_id=viewer.team_id, limit=100, cursor=None, filters={"call_id": call.id}
        )
    marks = [
        {
            "seq": t.seq,
            "role": t.role,
            "start": round(_offset(call, t.started_at), 3),
            "end": round(_offset(call, t.ended_at), 3),
        }
        for t in turns
    ]
    return render(
        request,
        "call.html",
        viewer=viewer,
        call=call,
        agent=agent,
        turns=turns,
        marks=marks,
        events=events,
        deliveries=sent.items,
        latency=charts.latency_chart(turns),
        chart=charts,
        offset=lambda when: _offset(call, when),
        barge_in_reasons=_BARGE_IN_REASONS,
        metadata=json.dumps(call.call_metadata, indent=2),
        analysis=json.dumps(call.analysis, indent=2) if call.analysis else None,
    )


@router.get("/calls/{call_id}/recording")
async def call_recording(
    call_id: str,
    viewer: Viewer,
    runtime: RuntimeDep,
    range_: Annotated[str | None, Header(alias="range")] = None,
) -> StreamingResponse:
    recording = await runtime.recordings.open(
        team_id=viewer.team_id, call_id=call_id, byte_range=ByteRange.parse(range_)
    )
    response = recording_response(recording, filename=f"{call_id}.wav")
    response.headers["Content-Disposition"] = f'inline; filename="{call_id}.wav"'
    return response


@router.get("/live")
async def live_page(request: Request, viewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    async with runtime.db.read() as s:
        live = await reports.live_calls(s, team_id=viewer.team_id)
        names = await reports.agent_names(s, team_id=viewer.team_id)
    return render(request, "live.html", viewer=viewer, live=live, names=names)


@router.get("/live.json")
async def live_json(viewer: Viewer, runtime: RuntimeDep) -> JSONResponse:
    """What the live page polls: the team's calls in progress."""
    now = runtime.clock.now()
    async with runtime.db.read() as s:
        live = await reports.live_calls(s, team_id=viewer.team_id)
        names = await reports.agent_names(s, team_id=viewer.team_id)
    return JSONResponse(
        [
            {
                "id": c.id,
                "agent": names.get(c.agent_id, c.agent_id),
                "status": c.status,
                "kind": c.kind,
                "transport": c.transport,
                "seconds": round((now - (c.started_at or c.created_at)).total_seconds()),
            }
            for c in live
        ],
        headers={"Cache-Control": "no-store"},
    )


@router.get("/webhooks")
async def webhooks_page(request: Request, viewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    async with runtime.db.read() as s:
        found = await endpoints.list_endpoints(s, team_id=viewer.team_id, limit=200, cursor=None)
        recent = await deliveries.list_deliveries(
            s, team_id=viewer.team_id, limit=50, cursor=None, filters={}
        )
    return render(
        request, "webhooks.html", viewer=viewer, endpoints=found.items, deliveries=recent.items, secret=None
    )


@router.get("/keys")
async def keys_page(request: Request, viewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    async with runtime.db.read() as s:
        keys = await reports.list_keys(s, team_id=viewer.team_id)
    return render(request, "keys.html", viewer=viewer, keys=keys, created=None, errors={})


@router.get("/users")
async def users_page(request: Request, viewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    now = runtime.clock.now()
    async with runtime.db.read() as s:
        people = await users.list_users(s, team_id=viewer.team_id)
        invites = await users.pending_invites(s, team_id=viewer.team_id, now=now)
    return render(request, "users.html", viewer=viewer, people=people, invites=invites, link=None)
