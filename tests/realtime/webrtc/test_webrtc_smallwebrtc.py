"""pipecat's SmallWebRTC signalling on the call's offer URL: its offer body, ``pc_id`` in the answer,
trickled candidates by PATCH, its ``chat`` data channel with pings and signalling messages, offers with
video, and CORS preflights. An aiortc peer plays ``@pipecat-ai/small-webrtc-transport``'s part."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from callgate.auth.keys import KeyType
from tests.support.live import LiveServer, settled_call
from tests.support.webrtc_client import loopback_ice


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


class SmallWebRTCPeer:
    """Offers audio + video (sendrecv) and a ``chat`` channel, its candidates left out of the offer and
    trickled by PATCH afterwards, as SmallWebRTC does without ``waitForICEGathering``."""

    def __init__(self, live: LiveServer, offer_url: str) -> None:
        self.live = live
        self.url = offer_url
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("chat", ordered=True)
        self.messages: list[Any] = []
        self.channel.on("message", self.messages.append)
        self.pc_id = ""

    async def connect(self) -> dict[str, Any]:
        self.pc.addTransceiver("audio", direction="sendrecv")
        self.pc.addTransceiver("video", direction="sendrecv")
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        lines = sdp.split("\r\n")
        candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
        bare = "\r\n".join(line for line in lines if not line.startswith(("a=candidate:", "a=end-of-cand")))
        r = await self.live.world.client.post(
            self.url, json={"sdp": bare, "type": "offer", "pc_id": None, "restart_pc": False}
        )
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        self.pc_id = answer["pc_id"]
        assert "m=video" in answer["sdp"] and "a=inactive" in answer["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        r = await self.patch([{"candidate": c, "sdp_mid": "0", "sdp_mline_index": 0} for c in candidates])
        assert r.status_code == 204, r.text
        async with asyncio.timeout(10):
            await opened.wait()
        return answer

    async def patch(self, candidates: list[dict[str, Any]], **overrides: Any) -> Any:
        body = {"pc_id": self.pc_id, "candidates": candidates} | overrides.pop("body", {})
        return await self.live.world.client.patch(overrides.pop("url", self.url), json=body, **overrides)

    def send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        self.channel.send(json.dumps({"label": "rtvi-ai", "type": type_, "id": "c1", "data": data or {}}))

    def rtvi(self) -> list[dict[str, Any]]:
        return [m for m in map(json.loads, self.messages) if m.get("label") == "rtvi-ai"]

    async def wait_for(self, predicate: Any, *, timeout: float = 15) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for raw in self.messages:
                    msg = json.loads(raw)
                    if predicate(msg):
                        found: dict[str, Any] = msg
                        return found
                await asyncio.sleep(0.02)


async def test_a_smallwebrtc_peer_holds_a_call(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, transport="webrtc", mode="text")
    assert f"?token={call['token']}" in str(call["webrtc_offer_url"])  # the URL alone is enough
    peer = SmallWebRTCPeer(live, str(call["webrtc_offer_url"]))
    try:
        answer = await peer.connect()
        assert answer["type"] == "answer" and answer["pc_id"].startswith("pc_")
        # What SmallWebRTC sends as soon as the channel opens, before client-ready: never a protocol error.
        track_status = {"type": "trackStatus", "receiver_index": 0, "enabled": True}
        peer.channel.send(json.dumps({"type": "signalling", "message": track_status}))
        peer.channel.send("ping: 1733500000000")
        peer.send("client-ready", {"version": "2.1.0", "about": {"library": "@pipecat-ai/client-js"}})
        ready = await peer.wait_for(lambda m: m.get("type") == "bot-ready")
        assert ready["data"]["call_id"] == call["id"]
        peer.channel.send("ping: 1733500001000")
        peer.send("send-text", {"content": "I would like to book an appointment for tomorrow at three"})
        await peer.wait_for(
            lambda m: m.get("type") == "bot-tts-text" and "tomorrow" in m["data"]["text"].lower()
        )
        peer.send("disconnect-bot")
        await peer.wait_for(lambda m: m.get("type") == "signalling" and m["message"] == {"type": "peerLeft"})
    finally:
        await peer.pc.close()
    assert not [m for m in peer.rtvi() if m["type"] == "error"]
    closed = [
        m for m in peer.rtvi() if m["type"] == "server-message" and m["data"]["type"] == "connection-closed"
    ]
    assert closed and closed[0]["data"]["code"] == 1000
    body = await settled_call(live, team.auth(), str(call["id"]))
    assert body["end_reason"] == "caller_hangup"


async def test_trickle_refusals(live: LiveServer) -> None:
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    other = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    peer = SmallWebRTCPeer(live, str(call["webrtc_offer_url"]))
    try:
        await peer.connect()
        good = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", "sdp_mid": "0"}
        bare_url = str(call["webrtc_offer_url"]).split("?")[0]
        other_url = str(other["webrtc_offer_url"]).replace(str(other["id"]), str(call["id"]))
        cases = [
            ({"body": {"pc_id": "pc_unknown"}}, 404),
            ({"url": bare_url}, 401),  # no token
            ({"url": other_url}, 401),  # another call's token
            ({"url": str(other["webrtc_offer_url"])}, 404),  # this pc_id is not on that call
            ({"body": {"candidates": [{"candidate": "candidate:nonsense", "sdp_mid": "0"}]}}, 400),
            ({"body": {"candidates": [{"candidate": "candidate:1 1 udp x 1.2.3.4 5 typ host"}]}}, 400),
            ({"body": {"candidates": [good] * 65}}, 422),
            ({"body": {"extra": 1}}, 422),
        ]
        for overrides, status in cases:
            r = await peer.patch([good], **overrides)
            assert r.status_code == status, (overrides, r.text)
        for _ in range(4):  # 4 x 20 more pass 64 in all
            r = await peer.patch([good] * 20)
        assert r.status_code == 400 and "at most 64" in r.text
        # SmallWebRTC re-offers with its pc_id when ICE fails: the token has joined once already.
        r = await live.world.client.post(
            peer.url, json={"sdp": "v=0\r\n", "type": "offer", "pc_id": peer.pc_id, "restart_pc": True}
        )
        assert r.status_code == 409 and r.json()["code"] == "token_reused"
    finally:
        await peer.pc.close()


async def test_cors_preflights_for_the_offer_url(live: LiveServer) -> None:
    team = await live.world.team("acme")
    await team.key(KeyType.PUBLISHABLE, allowed_origins=["https://shop.example"])
    call = await live.web_call(team, team.agent_id, transport="webrtc", mode="text")
    url = str(call["webrtc_offer_url"])
    for method in ("POST", "PATCH"):
        r = await live.world.client.options(
            url,
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        assert method in r.headers["access-control-allow-methods"]
        r = await live.world.client.options(
            url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": method}
        )
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
