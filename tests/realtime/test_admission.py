"""Admission control: a full or overloaded node tells new callers to try again, on every transport,
before their token or credentials are spent, and the calls it already serves go on."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from callgate.config import Settings
from callgate.metrics import Metrics
from callgate.providers.backlog import Backlog
from callgate.realtime.admission import Admission
from tests.support.live import LiveServer
from tests.support.rtvi_client import next_message, rtvi
from tests.support.sip_client import invite, new_sip_call, sip_call_status
from tests.support.webrtc_client import loopback_ice, post_offer, problem
from tests.support.world import make_settings


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


@pytest.fixture
def live_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(tmp_path, f"sqlite+aiosqlite:///{path}", public_url=None, max_sessions=1)


async def _join(url: str) -> Any:
    ws = await websockets.connect(url)
    await ws.send(rtvi("client-ready", {"version": "1.0.0"}))
    return ws


async def test_a_full_node_refuses_callers_until_a_call_ends(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    first = await live.web_call(team, agent_id, mode="text")
    second = await live.web_call(team, agent_id, mode="text")
    webrtc = await live.web_call(team, agent_id, transport="webrtc")
    sip = await new_sip_call(live, team=team)

    ws = await _join(str(first["websocket_url"]))
    await next_message(ws, "bot-ready")
    while live.runtime.control.live_count < 1:
        await asyncio.sleep(0.01)

    refused = await websockets.connect(str(second["websocket_url"]))
    with pytest.raises(websockets.ConnectionClosedError) as closed:
        await refused.send(rtvi("client-ready", {"version": "1.0.0"}))
        await refused.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    assert "maximum of 1" in closed.value.rcvd.reason

    r = await post_offer(live, webrtc, str(webrtc["token"]))
    assert r.status_code == 503 and problem(r) == "node_busy" and r.headers["Retry-After"] == "5"
    assert await invite(sip) == (503, "Service Unavailable")

    body = (await live.world.client.get(f"/v1/calls/{second['id']}", headers=team.auth())).json()
    assert body["status"] == "created"  # untouched: the caller may come back
    assert (await sip_call_status(live, sip))["status"] == "created"
    metrics = (await live.world.client.get("/metrics")).text
    assert 'callgate_sessions_refused_total{reason="max_sessions"} 3.0' in metrics
    assert "callgate_stt_queue_depth 0.0" in metrics and "callgate_stt_oldest_wait_seconds 0.0" in metrics

    await ws.send(rtvi("disconnect-bot"))
    await next_message(ws, "server-message")
    await ws.close()
    while live.runtime.control.live_count:
        await asyncio.sleep(0.01)
    again = await _join(str(second["websocket_url"]))  # the same token still works
    ready = await next_message(again, "bot-ready")
    assert ready["data"]["call_id"] == second["id"]
    await again.send(rtvi("disconnect-bot"))
    await next_message(again, "server-message")
    await again.close()


async def test_a_saturated_event_loop_refuses_new_callers() -> None:
    metrics = Metrics()
    registry = metrics.registry
    admission = Admission(live_sessions=lambda: 0, max_sessions=None, max_loop_lag_ms=100, metrics=metrics)
    watch = asyncio.create_task(admission.watch_loop())
    try:
        await asyncio.sleep(0.35)
        assert admission.refusal() is None and admission.loop_lag_s < 0.1
        for _ in range(6):  # the loop is blocked for 300 ms at a time: every call would be late
            time.sleep(0.3)
            await asyncio.sleep(0)
        assert admission.loop_lag_s > 0.1
        reason = admission.refusal()
        assert reason is not None and "overloaded" in reason
        assert registry.get_sample_value("callgate_event_loop_lag_seconds") == admission.loop_lag_s
        for _ in range(30):  # once the loop is free again, callers are let in
            await asyncio.sleep(0.1)
            if admission.refusal() is None:
                break
        assert admission.refusal() is None
        refused = registry.get_sample_value("callgate_sessions_refused_total", {"reason": "overloaded"})
        assert refused is not None and refused >= 1
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    assert json.dumps(admission.loop_lag_s)  # a plain float


async def test_callers_are_refused_while_speech_recognition_falls_behind() -> None:
    """The event loop is idle, but transcripts wait: new callers are refused (smoothed, so one slow
    batch does not do it), the backlog is exported, and callers are let in again once it drains."""
    metrics = Metrics()
    admission = Admission(
        live_sessions=lambda: 0, max_sessions=None, max_loop_lag_ms=0, metrics=metrics,
        max_stt_wait_ms=500, max_stt_queue=40,
    )  # fmt: skip

    def gauges() -> tuple[float | None, float | None]:
        get = metrics.registry.get_sample_value
        return get("callgate_stt_queue_depth"), get("callgate_stt_oldest_wait_seconds")

    admission.observe_stt(Backlog(depth=6, oldest_s=1.0))  # one probe of a slow batch: not yet
    assert admission.refusal() is None
    assert gauges() == (6, 1.0)
    for _ in range(2):  # it lasts: the oldest utterance keeps waiting a second
        admission.observe_stt(Backlog(depth=6, oldest_s=1.0))
    reason = admission.refusal()
    assert reason is not None and "speech recognition" in reason and "try again" in reason
    refused = metrics.registry.get_sample_value("callgate_sessions_refused_total", {"reason": "stt_backlog"})
    assert refused == 1
    for _ in range(5):
        admission.observe_stt(Backlog())
    assert admission.refusal() is None and gauges() == (0, 0)
    admission.observe_stt(Backlog(depth=41, oldest_s=0.1))  # a long queue refuses at once
    assert admission.refusal() is not None


async def test_the_watcher_samples_the_speech_recognition_backlog() -> None:
    metrics = Metrics()
    admission = Admission(
        live_sessions=lambda: 0, max_sessions=None, max_loop_lag_ms=0, metrics=metrics,
        stt_backlog=lambda: Backlog(depth=3, oldest_s=0.25), max_stt_wait_ms=1000,
    )  # fmt: skip
    watch = asyncio.create_task(admission.watch_loop())
    try:
        while admission.stt_depth == 0:
            await asyncio.sleep(0.05)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    assert metrics.registry.get_sample_value("callgate_stt_queue_depth") == 3
    assert metrics.registry.get_sample_value("callgate_stt_oldest_wait_seconds") == 0.25
    assert 0 < admission.stt_wait_s <= 0.25
