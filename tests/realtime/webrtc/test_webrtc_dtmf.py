"""Key presses over WebRTC: a real aiortc caller sends RFC 4733 telephone-event packets in its audio
stream (as a browser's ``RTCDTMFSender`` does) and the flow agent receives them as a typed caller turn,
``"DTMF 1234#"`` — the same path and format as over SIP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from callgate.realtime.media import DtmfEvent, PeerMedia
from tests.support.live import LiveServer, wait_settled
from tests.support.rtp_dtmf import DtmfSender, telephone_event
from tests.support.webrtc_client import CallerTrack, RTCClient, loopback_ice

PIN_FLOW: dict[str, Any] = {
    "start": "pin",
    "slots": {"pin": {"type": "number", "prompt": "Please key in your member number, then press hash."}},
    "states": {
        "pin": {"collect": ["pin"], "next": "thanks"},
        "thanks": {"say": "Thank you, member {{pin}}.", "set": {"keyed": True}, "end": True},
    },
}


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


async def test_telephone_events_keep_their_place_in_the_audio_stream() -> None:
    """Through real SRTP and aiortc's RTP routing: each key is reported once, and the packets it
    replaced in the audio sequence are not counted as lost."""
    peer, caller = RTCPeerConnection(), CallerTrack()
    peer.addTransceiver(caller, direction="sendrecv")
    peer.createDataChannel("rtvi")
    digits: list[DtmfEvent] = []
    media = PeerMedia(on_audio=lambda pcm: None, on_dtmf=digits.append)
    try:
        await peer.setLocalDescription(await peer.createOffer())
        answer = await media.answer(peer.localDescription.sdp)
        offered = telephone_event(peer.localDescription.sdp)
        assert offered is not None and offered[1] == 48000 and telephone_event(answer) == offered
        await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(5):
            assert await media.wait_connected()
        sender = DtmfSender(peer, answer, duration_ms=120)
        await sender.press("7*#")
        await asyncio.sleep(0.1)
        assert [(d.digit, d.duration_ms) for d in digits] == [("7", 120), ("*", 120), ("#", 120)]
        assert sender.packets_sent == 3 * (5 + 3)
        stats = media.inbound_stats
        assert stats is not None and stats.lost_packets == 0 and stats.decode_errors == 0
        assert stats.frames > 0
    finally:
        await peer.close()
        await media.close()


@pytest.mark.speech
async def test_keys_reach_the_flow_as_a_caller_turn(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team, flow=PIN_FLOW)
    call = await live.web_call(team, agent_id, transport="webrtc")
    async with RTCClient(str(call["webrtc_offer_url"]), str(call["token"])) as client:
        offered = client.pc.localDescription.sdp
        assert "telephone-event/48000" in offered and "telephone-event/48000" in client.answer_sdp
        await client.wait_for("bot-stopped-speaking", timeout=30)  # the prompt played out
        await DtmfSender(client.pc, client.answer_sdp).press("1234#")
        ended = await client.wait_for("server-message", timeout=30)
        assert ended["data"] == {"type": "call-ended", "reason": "agent_ended"}

    body = await wait_settled(live, team.auth(), str(call["id"]))
    assert body["end_reason"] == "agent_ended"
    turns: list[dict[str, Any]] = body["transcript"]  # type: ignore[assignment]
    keyed = [t for t in turns if t["role"] == "user"]
    assert [t["text"] for t in keyed] == ["DTMF 1234#"]  # '#' ends the sequence at once
    answer = next(t for t in turns if t["seq"] > keyed[0]["seq"])
    assert answer["role"] == "agent" and "1234" in answer["text"]
    assert body["data"] == {"pin": 1234, "keyed": True}


@pytest.mark.speech
async def test_g711_caller_keys_end_after_the_inter_digit_pause(live: LiveServer) -> None:
    """A SIP-phone-like offer (PCMU and telephone-event/8000); no '#': the keys go after 1.5 s."""
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team, flow=PIN_FLOW)
    call = await live.web_call(team, agent_id, transport="webrtc")
    url, token = str(call["webrtc_offer_url"]), str(call["token"])
    async with RTCClient(url, token, codec="PCMU", telephone_event=True) as client:
        answered = telephone_event(client.answer_sdp)
        assert answered is not None and answered[1] == 8000
        assert "opus" not in client.answer_sdp.lower()
        await client.wait_for("bot-stopped-speaking", timeout=30)
        await DtmfSender(client.pc, client.answer_sdp).press("42")
        await client.wait_for("server-message", timeout=30)
    body = await wait_settled(live, team.auth(), str(call["id"]))
    turns: list[dict[str, Any]] = body["transcript"]  # type: ignore[assignment]
    assert [t["text"] for t in turns if t["role"] == "user"] == ["DTMF 42"]
    assert body["data"] == {"pin": 42, "keyed": True}
