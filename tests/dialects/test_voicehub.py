"""The VoiceHub dialect: create-web-call as the seed documents it, credits, CORS, and a text call through
the returned ``webCallSocketPath`` against a real server."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callgate.auth.keys import KeyType
from callgate.cli import main
from callgate.config import Settings
from callgate.domain import calls, credits
from callgate.domain.lifecycle import CallStatus, EndReason
from tests.dialects.fixtures import agent_says, flow_agent, next_json, rtvi
from tests.support.live import LiveServer
from tests.support.world import World

CREATE = "/dialects/voicehub/calls/public/create-web-call"
ORIGIN = "https://widget.example"


def headers(key: str, agent_id: str | None, **extra: str) -> dict[str, str]:
    out = {"x-api-access-key": key, "content-type": "application/json", **extra}
    if agent_id is not None:
        out["voicehub-agent-id"] = agent_id
    return out


async def create(
    client: httpx.AsyncClient, key: str, agent_id: str | None, type_: Any = "text", **extra: str
) -> Any:
    return await client.post(CREATE, json={"type": type_}, headers=headers(key, agent_id, **extra))


def assert_error(r: httpx.Response, status: int, message: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    body: dict[str, Any] = r.json()
    assert set(body) == {"statusCode", "message", "error"} and body["statusCode"] == status
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"].startswith(message), body
    return body


@pytest.mark.parametrize(
    ("type_", "mode"), [("text", "text"), ("WebAudio", "audio"), ("TextAudio", "audio_text")]
)
async def test_types_map_to_modes(world: World, type_: str, mode: str) -> None:
    team = await world.team("acme")
    agent_id = await flow_agent(world, team)
    r = await create(world.client, team.secret, agent_id, type_)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"callId", "webCallSocketPath"}
    assert body["webCallSocketPath"].startswith(f"/dialects/voicehub/calls/{body['callId']}/socket?token=")
    assert r.headers["access-control-allow-origin"] == "*"
    native = (await world.client.get(f"/v1/calls/{body['callId']}", headers=team.auth())).json()
    assert native["mode"] == mode and native["transport"] == "websocket" and native["status"] == "created"


async def test_preflight_answers_any_origin(world: World) -> None:
    r = await world.client.options(
        CREATE,
        headers={
            "Origin": "https://anywhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-access-key, voicehub-agent-id, content-type",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "POST"
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "authorization", "voicehub-agent-id", "x-api-access-key"} <= allowed


async def test_misconfigured_agent_is_400(world: World) -> None:
    acme, other = await world.team("acme"), await world.team("other")
    fake_tts = await flow_agent(world, acme, tts={"engine": "fake"})  # no such engine registered here
    for agent_id, type_ in (
        (acme.agent_id, "text"),  # a prompt agent, and no LLM is configured on this server
        (fake_tts, "WebAudio"),
        ("agt_missing", "text"),
        (other.agent_id, "text"),  # another team's agent does not exist for this key
    ):
        assert_error(await create(world.client, acme.secret, agent_id, type_), 400, "Misconfigured agent")
    # The same flow agent is fine for text: it needs no speech engine.
    assert (await create(world.client, acme.secret, fake_tts, "text")).status_code == 201
    assert_error(await create(world.client, acme.secret, None), 400, "Misconfigured agent")
    assert_error(await create(world.client, acme.secret, fake_tts, "video"), 400)
    r = await world.client.post(CREATE, content=b"{", headers=headers(acme.secret, fake_tts))
    assert_error(r, 400)


@pytest.mark.parametrize("key", [None, "", "cg_sk_nope", "cg_pk_" + "b" * 44])
async def test_invalid_key_is_401(world: World, key: str | None) -> None:
    team = await world.team("acme")
    hdrs = headers(key or "", team.agent_id)
    if key is None:
        del hdrs["x-api-access-key"]
    r = await world.client.post(CREATE, json={"type": "text"}, headers=hdrs)
    assert_error(r, 401, "Invalid API key")


async def test_no_credits_left_is_403_and_live_calls_draw_credits_down(world: World) -> None:
    team = await world.team("acme")
    agent_id = await flow_agent(world, team)
    base = world.runtime.clock.now() - timedelta(seconds=60)
    await world.runtime.db.write(lambda s: credits.set_balance(s, team_id=team.id, seconds=30, now=base))

    async def talk(call_id: str, *, start: timedelta, end: timedelta | None) -> None:
        async def job(s: Any) -> None:
            call = await calls.join_call(s, team_id=team.id, call_id=call_id, now=base + start)
            await calls.transition(s, call=call, to=CallStatus.IN_PROGRESS, now=base + start)
            if end is not None:
                reason = EndReason.CALLER_HANGUP
                await calls.end_call(s, team_id=team.id, call_id=call_id, reason=reason, now=base + end)

        await world.runtime.db.write(job)

    first = (await create(world.client, team.secret, agent_id)).json()["callId"]
    await talk(first, start=timedelta(0), end=timedelta(seconds=20))
    async with world.runtime.db.read() as s:
        left = await credits.remaining_seconds(s, team_id=team.id, now=world.runtime.clock.now())
    assert left == pytest.approx(10, abs=1)

    # A live call keeps drawing: 20 s of it spends the 10 s that were left.
    second = (await create(world.client, team.secret, agent_id)).json()["callId"]
    await talk(second, start=timedelta(seconds=40), end=None)
    assert_error(await create(world.client, team.secret, agent_id), 403, "Insufficient credits")
    # The native API is held to the same balance; removing the balance stops metering.
    r = await world.client.post("/v1/web-calls", json={"agent_id": agent_id}, headers=team.auth())
    assert r.status_code == 403 and r.json()["code"] == "insufficient_credits"
    await world.runtime.db.write(lambda s: credits.set_balance(s, team_id=team.id, seconds=None, now=base))
    assert (await create(world.client, team.secret, agent_id)).status_code == 201


async def test_operators_set_credits_with_the_cli(world: World, settings: Settings) -> None:
    team = await world.team("acme")
    agent_id = await flow_agent(world, team)
    env = {"CALLGATE_DATA_DIR": str(settings.data_dir), "CALLGATE_DATABASE_URL": str(settings.database_url)}

    def cli(*args: str) -> str:
        result = CliRunner().invoke(
            main, ["credits", *args, "--team", "acme"], env=env, catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return result.output

    await asyncio.to_thread(cli, "set", "--seconds", "0")
    assert await asyncio.to_thread(cli, "show") == "0\n"
    assert_error(await create(world.client, team.secret, agent_id), 403, "Insufficient credits")
    await asyncio.to_thread(cli, "set", "--unlimited")
    assert await asyncio.to_thread(cli, "show") == "unlimited\n"
    assert (await create(world.client, team.secret, agent_id)).status_code == 201


async def test_publishable_keys_stay_origin_locked(world: World) -> None:
    team = await world.team("acme")
    agent_id = await flow_agent(world, team)
    key = await team.key(KeyType.PUBLISHABLE, allowed_origins=[ORIGIN])
    assert (await create(world.client, key, agent_id, Origin=ORIGIN)).status_code == 201
    assert_error(await create(world.client, key, agent_id, Origin="https://evil.example"), 403)
    assert_error(await create(world.client, key, agent_id), 403)
    shared = await team.key(KeyType.SHARED, agent_ids=[agent_id])
    assert (await create(world.client, shared, agent_id)).status_code == 201
    assert_error(await create(world.client, shared, team.agent_id), 400, "Misconfigured agent")


async def test_other_methods_are_405_operation_not_allowed(world: World) -> None:
    team = await world.team("acme")
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        r = await world.client.request(method, CREATE, headers=headers(team.secret, team.agent_id))
        assert_error(r, 405, "Operation not allowed")


async def test_rate_limit_is_429_with_retry_after(world: World) -> None:
    team = await world.team("acme")
    agent_id = await flow_agent(world, team)
    key = await team.key(KeyType.SECRET, rate_limit="1/minute")
    assert (await create(world.client, key, agent_id)).status_code == 201
    r = await create(world.client, key, agent_id)
    assert_error(r, 429)
    assert 1 <= int(r.headers["Retry-After"]) <= 60


async def test_text_call_through_the_socket_path(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await flow_agent(live.world, team)
    r = await create(live.world.client, team.secret, agent_id, "text")
    assert r.status_code == 201, r.text
    call_id, path = r.json()["callId"], r.json()["webCallSocketPath"]
    async with websockets.connect(live.url.replace("http", "ws", 1) + path) as ws:
        await ws.send(rtvi("send-text", {"content": "too early"}))
        assert (await next_json(ws, {"event": "error"}))["data"]["message"].startswith("join a channel")
        await ws.send('{"event": "channel.join", "data": {"callId": "call_other", "channels": ["text"]}}')
        await next_json(ws, {"event": "error"})
        await ws.send(f'{{"event": "channel.join", "data": {{"callId": "{call_id}", "channels": ["text"]}}}}')
        joined = await next_json(ws, {"event": "channel.joined"})
        assert joined["data"]["callId"] == call_id and joined["data"]["channels"] == ["text"]
        created = await next_json(ws, {"event": "created"})
        assert created["data"] == {"callId": call_id, "type": "text"}
        assert "Maple Street" in await agent_says(ws)

        await ws.send(
            f'{{"event": "channel.join", "data": {{"callId": "{call_id}", "channels": ["audio"]}}}}'
        )
        refused = await next_json(ws, {"event": "error"})
        assert refused["data"]["message"] == "For Text calls, you can't join Audio channels"

        await ws.send(
            rtvi("send-text", {"content": "I would like to book an appointment for tomorrow at three pm"})
        )
        answer = await agent_says(ws)
        assert "tomorrow" in answer.lower()
        await ws.send(rtvi("disconnect-bot"))
        ended = await next_json(ws, {"type": "server-message"})
        assert ended["data"] == {"type": "call-ended", "reason": "caller_hangup"}

    native = (await live.world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
    assert native["status"] == "ended" and native["end_reason"] == "caller_hangup"
    assert any(t["role"] == "user" and "appointment" in t["text"] for t in native["transcript"])


async def test_the_socket_token_is_single_use(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await flow_agent(live.world, team)
    body = (await create(live.world.client, team.secret, agent_id, "TextAudio")).json()
    url = live.url.replace("http", "ws", 1) + body["webCallSocketPath"]
    join = f'{{"event": "channel.join", "data": {{"callId": "{body["callId"]}", "channels": ["text"]}}}}'
    async with websockets.connect(url) as ws:
        await ws.send(join)
        await next_json(ws, {"event": "channel.joined"})
        # Joining audio later switches the agent to speech, as the channel now carries audio.
        await ws.send(join.replace('["text"]', '["audio"]'))
        assert (await next_json(ws, {"event": "channel.joined"}))["data"]["channels"] == ["audio", "text"]
        async with websockets.connect(url) as again:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(again.recv(), 10)
            assert again.close_code == 4409


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        st.dictionaries(st.sampled_from(["type", "x"]), st.none() | st.integers() | st.text(max_size=12)),
        st.binary(max_size=30),
    ),
    agent=st.one_of(st.none(), st.text(max_size=70)),
)
async def test_no_request_gets_a_5xx(world: World, body: Any, agent: str | None) -> None:
    team = await world.team("acme")
    hdrs = {"x-api-access-key": team.secret, "content-type": "application/json"}
    if agent is not None and agent.isprintable() and agent.isascii():
        hdrs["voicehub-agent-id"] = agent
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = await world.client.post(CREATE, headers=hdrs, **kwargs)
    assert r.status_code in (400, 401), r.text
    assert_error(r, r.status_code)
