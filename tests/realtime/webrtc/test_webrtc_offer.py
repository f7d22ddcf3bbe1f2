"""The WebRTC offer endpoint: token and SDP refusals as HTTP problems, ICE servers in the create answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from callgate.auth import tokens
from callgate.clock import utcnow
from callgate.config import Settings
from callgate.realtime.webrtc import call as webrtc_call
from tests.support.live import LiveServer, call_status, serve, settled_status
from tests.support.webrtc_client import browser_offer, loopback_ice, post_offer, problem
from tests.support.world import make_settings


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


async def test_token_refusals_mirror_the_websocket_close_codes(live: LiveServer) -> None:
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    other = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    websocket = await live.web_call(team, team.agent_id, mode="text")
    expired, _ = tokens.issue(
        key=live.runtime.signing_key,
        call_id=str(call["id"]),
        team_id=team.id,
        transport="webrtc",
        now=utcnow() - timedelta(minutes=5),
        ttl_s=60,
    )
    cases = [
        (None, 401, "invalid_token"),
        ("not.a.jwt", 401, "invalid_token"),
        (str(other["token"]), 403, "token_mismatch"),
        (str(websocket["token"]), 403, "token_mismatch"),
        (expired, 410, "token_expired"),
    ]
    for token, status, code in cases:
        r = await post_offer(live, call, token)
        assert (r.status_code, problem(r)) == (status, code), token
    assert await call_status(live, team.auth(), str(call["id"])) == "created"  # untouched


async def test_token_is_single_use_and_call_must_be_live(live: LiveServer) -> None:
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    first = await post_offer(live, call, str(call["token"]), query=True)  # ?token= works too
    assert first.status_code == 200, first.text
    assert first.json()["type"] == "answer" and "a=candidate:" in first.json()["sdp"]
    assert first.json()["sdp"].endswith("\r\n")  # browsers refuse an SDP whose last line is cut
    again = await post_offer(live, call, str(call["token"]))
    assert (again.status_code, problem(again)) == (409, "token_reused")
    # Nobody connects to the answer: the call fails once the connect timeout passes.

    ended = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    r = await live.world.client.post(f"/v1/calls/{ended['id']}/end", headers=team.auth())
    assert r.status_code in (200, 202), r.text
    late = await post_offer(live, ended, str(ended["token"]))
    assert (late.status_code, problem(late)) == (404, "not_found")


async def test_bad_offers_are_refused_before_the_token_is_spent(live: LiveServer) -> None:
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    good = await browser_offer()
    no_audio = "\r\n".join(line for line in good.split("\r\n") if "audio" not in line)
    pcm_only = good.replace("opus/48000/2", "foo/48000/2").replace("PCMU/8000", "bar/8000")
    pcm_only = pcm_only.replace("PCMA/8000", "baz/8000").replace("G722/8000", "qux/8000")
    for sdp in ("v=0 nonsense", no_audio, pcm_only):
        r = await post_offer(live, call, str(call["token"]), sdp=sdp)
        assert (r.status_code, problem(r)) == (400, "sdp_rejected"), sdp
    r = await live.world.client.post(
        str(call["webrtc_offer_url"]),
        json={"sdp": good, "type": "answer"},
        headers={"Authorization": f"Bearer {call['token']}"},
    )
    assert r.status_code == 422
    r = await post_offer(live, call, str(call["token"]), sdp=good)  # the token still works
    assert r.status_code == 200, r.text


async def test_an_offer_aiortc_cannot_answer_spends_nothing(live: LiveServer) -> None:
    """An offer that passes the checks but that the media stack refuses (no ICE credentials) is a 400
    that leaves the token unspent and the call waiting; the token's transport is checked first."""
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    good = await browser_offer()
    no_ufrag = "\r\n".join(line for line in good.split("\r\n") if not line.startswith("a=ice-ufrag"))
    r = await post_offer(live, call, str(call["token"]), sdp=no_ufrag)
    assert (r.status_code, problem(r)) == (400, "sdp_rejected"), r.text
    status = await live.world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())
    assert status.json()["status"] == "created"
    # A token for another transport is refused as such, whatever the offer.
    websocket = await live.web_call(team, team.agent_id, mode="text")
    r = await post_offer(
        live, {**websocket, "webrtc_offer_url": call["webrtc_offer_url"]}, str(websocket["token"])
    )
    assert (r.status_code, problem(r)) == (403, "token_mismatch"), r.text
    r = await post_offer(live, call, str(websocket["token"]), sdp=no_ufrag)
    assert r.status_code == 403, r.text
    r = await post_offer(live, call, str(call["token"]), sdp=good)  # the token still works
    assert r.status_code == 200, r.text


async def test_concurrency_limit(live: LiveServer) -> None:
    team = await live.world.team("tiny", max_live_calls=1)
    first = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    second = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    assert (await post_offer(live, first, str(first["token"]))).status_code == 200
    r = await post_offer(live, second, str(second["token"]))
    assert (r.status_code, problem(r)) == (429, "concurrency_limit")


@pytest.fixture
async def stun_live(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[LiveServer]:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    settings: Settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{path}",
        ice_servers=[
            {"urls": "stun:127.0.0.1:3478"},
            {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "u", "credential": "p"},
        ],
    )
    async for server in serve(settings):
        yield server


async def test_ice_servers_are_handed_to_the_client(stun_live: LiveServer) -> None:
    team = await stun_live.world.team("acme")
    call = await stun_live.web_call(team, team.agent_id, transport="webrtc")
    assert call["ice_servers"] == [
        {"urls": ["stun:127.0.0.1:3478"], "username": None, "credential": None},
        {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "u", "credential": "p"},
    ]
    websocket = await stun_live.web_call(team, team.agent_id)
    assert websocket["ice_servers"] is None


def test_ice_server_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must start with stun"):
        make_settings(tmp_path, "sqlite+aiosqlite://", ice_servers=[{"urls": "http://x"}])
    with pytest.raises(ValueError, match="needs a username"):
        make_settings(tmp_path, "sqlite+aiosqlite://", ice_servers=[{"urls": "turn:x"}])


async def test_unanswered_offer_ends_the_call(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer nobody connects to: the call ends as transport_lost once the connect timeout passes."""
    monkeypatch.setattr(webrtc_call, "CONNECT_TIMEOUT_S", 0.5)
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    assert (await post_offer(live, call, str(call["token"]))).status_code == 200
    r = await live.world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())
    assert r.json()["status"] == "connecting"
    assert await settled_status(live, team.auth(), str(call["id"])) == "ended"
    r = await live.world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())
    assert r.json()["end_reason"] == "transport_lost"
