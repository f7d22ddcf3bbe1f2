"""The aiortc media bridge on its own: a PeerMedia answering a real aiortc peer on loopback, and its
inbound jitter buffer, outbound track and DTMF receiver fed directly."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import aioice.stun
import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import PCMU_CODEC
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket, RtpPacket

from callgate.config import Settings
from callgate.pipeline.audio import tone
from callgate.realtime import rtvi
from callgate.realtime.media import DtmfEvent, MediaState, OfferRejected, PeerMedia
from callgate.realtime.media import opus as libopus
from callgate.realtime.media import peer as peer_module
from callgate.realtime.media.encoder import FrameEncoder
from callgate.realtime.media.inbound import InboundAudio
from callgate.realtime.media.offer import check_offer
from callgate.realtime.media.outbound import DTX_HANGOVER, OutboundAudioTrack
from callgate.realtime.media.rtp_hooks import mark_talkspurts
from callgate.realtime.media.telephone_events import DtmfReceiver
from callgate.realtime.webrtc.transport import WebRTCTransport
from tests.support.browser import dominant_frequency
from tests.support.webrtc_client import CallerTrack, loopback_ice


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


@dataclass
class Pair:
    media: PeerMedia
    peer: RTCPeerConnection
    caller: CallerTrack
    heard: list[bytes] = field(default_factory=list)  # what the server got, 16 kHz
    received: list[np.ndarray] = field(default_factory=list)  # what the peer got, at 48 kHz
    messages: list[str] = field(default_factory=list)
    digits: list[DtmfEvent] = field(default_factory=list)


async def connect(codec: str | None = None) -> Pair:
    peer, caller = RTCPeerConnection(), CallerTrack()
    transceiver = peer.addTransceiver(caller, direction="sendrecv")
    if codec is not None:
        caps = RTCRtpSender.getCapabilities("audio").codecs
        transceiver.setCodecPreferences([c for c in caps if c.name == codec])
    channel = peer.createDataChannel("rtvi")
    heard: list[bytes] = []
    messages: list[str] = []
    digits: list[DtmfEvent] = []
    media = PeerMedia(on_audio=heard.append, on_message=messages.append, on_dtmf=digits.append)
    pair = Pair(media, peer, caller, heard, messages=messages, digits=digits)

    @peer.on("track")
    def _(track: object) -> None:
        async def read() -> None:
            while True:
                try:
                    frame = await track.recv()  # type: ignore[attr-defined]
                except Exception:
                    return
                pair.received.append(frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0])

        reader = asyncio.create_task(read())
        peer.on(
            "connectionstatechange", lambda: reader.cancel() if peer.connectionState == "closed" else None
        )

    await peer.setLocalDescription(await peer.createOffer())
    answer = await media.answer(peer.localDescription.sdp)
    await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    async with asyncio.timeout(5):
        assert await media.wait_connected()
        assert await media.wait_channel()
    channel.send("hello")
    return pair


@pytest.fixture
async def opus() -> AsyncIterator[Pair]:
    pair = await connect()
    yield pair
    await pair.peer.close()
    await pair.media.close()


async def test_opus_both_ways(opus: Pair) -> None:
    assert (opus.media.codec, opus.media.output_rate) == ("opus", 48000)
    opus.caller.put(tone(1000, 16000, freq=440))
    await opus.media.send_audio(tone(1000, 48000, freq=1000))
    await asyncio.sleep(1.6)
    assert {len(f) for f in opus.heard} == {640}
    heard = np.frombuffer(b"".join(opus.heard), dtype=np.int16).astype(np.float32)
    assert abs(dominant_frequency(heard, 16000) - 440) < 10
    received = np.concatenate(opus.received).astype(np.float32)
    assert abs(dominant_frequency(received, 48000) - 1000) < 10
    assert opus.messages == ["hello"]
    stats = opus.media.inbound_stats
    assert stats is not None and stats.lost_packets == 0 and stats.decode_errors == 0


async def test_the_answer_asks_the_caller_for_opus_dtx() -> None:
    """A browser's offer (Chromium's Opus parameters, no DTX) is answered with ``usedtx=1``, which is
    what makes a browser stop sending while its user is silent (checked in Chromium by the e2e tests)."""
    peer = RTCPeerConnection()
    peer.addTransceiver("audio", direction="sendrecv")
    await peer.setLocalDescription(await peer.createOffer())
    opus_pt = re.search(r"a=rtpmap:(\d+) opus/48000", peer.localDescription.sdp)
    assert opus_pt is not None
    offer = re.sub(
        rf"a=fmtp:{opus_pt[1]} [^\r\n]*",
        f"a=fmtp:{opus_pt[1]} minptime=10;useinbandfec=1",
        peer.localDescription.sdp,
    )
    assert "usedtx" not in offer
    media = PeerMedia(on_audio=lambda _: None, on_message=lambda _: None)
    try:
        answer = await media.answer(offer)
    finally:
        await peer.close()
        await media.close()
    fmtp = re.search(rf"a=fmtp:{opus_pt[1]} ([^\r\n]*)", answer)
    assert fmtp is not None and "usedtx=1" in fmtp[1].split(";")


async def test_caller_audio_skips_aiortcs_receive_path(opus: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once connected, caller RTP goes from the datagram callback to the jitter buffer (rtp_hooks):
    aioice no longer tries it as STUN, aiortc's DTLS transport task no longer sees it, and the audio
    still arrives whole and in order."""
    parsed_as_stun: list[bytes] = []
    parse = aioice.stun.parse_message

    def counting_parse(data: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed_as_stun.append(data)
        return parse(data, *args, **kwargs)

    monkeypatch.setattr(aioice.stun, "parse_message", counting_parse)
    dtls = opus.peer.getReceivers()[0].transport  # (the peer's own; the server's is inside media)
    server_dtls = opus.media._pc.getTransceivers()[0].receiver.transport
    through_aiortc: list[bytes] = []
    handle = server_dtls._handle_rtp_data

    async def counting(data: bytes, arrival_time_ms: int) -> None:
        through_aiortc.append(data)
        await handle(data, arrival_time_ms)

    server_dtls._handle_rtp_data = counting  # type: ignore[method-assign]
    before = len(opus.heard)
    opus.caller.put(tone(600, 16000, freq=440))
    await asyncio.sleep(1.0)
    assert through_aiortc == [] and dtls.state == "connected"
    caller = opus.peer.getSenders()[0]._ssrc.to_bytes(4, "big")
    media = [d for d in parsed_as_stun if 127 < d[0] < 192]
    assert media and all(d[8:12] != caller for d in media)  # only the agent's, by the unhooked peer
    heard = opus.heard[before:]
    assert len(heard) >= 40 and opus.media.inbound_stats is not None
    assert opus.media.inbound_stats.lost_packets == 0 and opus.media.inbound_stats.late_packets == 0
    assert (
        abs(dominant_frequency(np.frombuffer(b"".join(heard), np.int16).astype(np.float32), 16000) - 440) < 10
    )


async def test_pcmu_both_ways() -> None:
    pair = await connect("PCMU")
    try:
        assert (pair.media.codec, pair.media.output_rate) == ("PCMU", 8000)
        pair.caller.put(tone(600, 16000, freq=700))
        await pair.media.send_audio(tone(600, 8000, freq=1200))
        await asyncio.sleep(1.2)
        heard = np.frombuffer(b"".join(pair.heard), dtype=np.int16).astype(np.float32)
        assert abs(dominant_frequency(heard, 16000) - 700) < 15
        received = np.concatenate(pair.received).astype(np.float32)
        assert abs(dominant_frequency(received, 8000) - 1200) < 15
    finally:
        await pair.peer.close()
        await pair.media.close()


async def test_peer_hangup_is_a_clean_close(opus: Pair) -> None:
    states: list[MediaState] = []
    opus.media._on_state = states.append  # observe from now on
    await opus.peer.close()
    async with asyncio.timeout(5):
        while opus.media.state is MediaState.CONNECTED:
            await asyncio.sleep(0.02)
    assert opus.media.state is MediaState.CLOSED and states == [MediaState.CLOSED]
    assert opus.media.send_message("too late") is False


def decoder() -> Callable[[av.Packet], np.ndarray]:
    """Decode the track's Opus packets as a peer would (a stereo 48 kHz decoder; first channel)."""
    context = av.CodecContext.create("libopus", "r")
    assert isinstance(context, av.AudioCodecContext)
    context.format, context.layout, context.sample_rate = "s16", "stereo", 48000

    def decode(packet: av.Packet) -> np.ndarray:
        frames = context.decode(av.Packet(bytes(packet)))
        return np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in frames])

    return decode


async def test_flush_silences_the_agent_within_a_frame() -> None:
    track = OutboundAudioTrack(sample_rate=16000)
    decode = decoder()
    await track.put(tone(2000, 16000, freq=500))
    first = [decode(await track.recv()) for _ in range(5)]
    assert all(np.abs(f[480:]).max() > 1000 for f in first)  # (past Opus's start-up delay)
    assert track.flush() >= 90
    tail = decode(await track.recv())  # the 6.5 ms the encoder still held, then silence
    assert np.abs(tail[480:]).max() < 500  # (the codec rings down: -30 dB and falling)
    idle = await track.recv()
    assert bytes(idle) == track._encoder.silence and np.abs(decode(idle)).max() < 100
    assert track.stats.flushed_frames >= 90 and track.queued_ms == 0
    assert track.stats.underruns == 0  # barge-in: the slot after the flush did not wait for a frame
    track.stop()


async def test_outbound_paces_one_frame_per_slot() -> None:
    loop = asyncio.get_running_loop()
    track = OutboundAudioTrack(sample_rate=8000, codec="PCMU", max_queue_ms=200)
    start = loop.time()
    first = await track.recv()  # idle: the pre-encoded silence, at once
    assert bytes(first) == b"\xff" * 160 and track.stats.encoded_silence == 0
    producer = asyncio.create_task(track.put(tone(1000, 8000)))  # 1 s: more than the queue holds
    await asyncio.sleep(0.05)
    assert not producer.done() and track.queued_ms == 200  # the producer waits for room
    packets = [await track.recv() for _ in range(10)]
    assert [p.pts for p in packets] == [160 * n for n in range(1, 11)]
    assert all(bytes(p) != b"\xff" * 160 for p in packets)
    assert loop.time() - start == pytest.approx(0.2, abs=0.06)  # one frame per 20 ms slot
    track.flush()
    await producer
    track.stop()


async def test_agent_audio_goes_out_in_the_next_slot() -> None:
    """No prebuffer: a frame queued while idle is sent in the very next slot (the session's player
    already paces), where a 40 ms prebuffer would have sent two more slots of silence first."""
    track = OutboundAudioTrack(sample_rate=8000, codec="PCMU")
    for _ in range(3):
        assert bytes(await track.recv()) == b"\xff" * 160
    await track.put(tone(20, 8000))
    assert bytes(await track.recv()) != b"\xff" * 160 and track.stats.frames == 1
    track.stop()


async def test_player_paced_speech_has_no_gaps() -> None:
    """Frames handed over one per 20 ms on the same beat as the track's slots, each a few ms before or
    after its slot is due (scheduling jitter), go out back to back: a slot waits a little for a late
    frame instead of sending silence (which would leave a gap and push the rest of the speech back)."""
    loop = asyncio.get_running_loop()
    track = OutboundAudioTrack(sample_rate=8000, codec="PCMU")
    speech = tone(500, 8000)
    sent: list[bool] = []

    async def player() -> None:
        assert track._due is not None
        start = track._due - 0.02  # the first slot's due time
        for n in range(25):
            due = start + (n + 1) * 0.02 + (0.005 if n % 2 else -0.005)
            await asyncio.sleep(max(0.0, due - loop.time()))
            await track.put(speech[n * 320 : (n + 1) * 320])

    await track.recv()
    producer = asyncio.create_task(player())
    for _ in range(30):
        sent.append(bytes(await track.recv()) != b"\xff" * 160)
    await producer
    assert sent[:25] == [True] * 25
    assert track.stats.frames == 25 and track.stats.underruns == 1  # only the end of the speech
    track.stop()


async def test_an_idle_call_sends_only_dtx(opus: Pair) -> None:
    """Opus DTX end to end: a few silent packets, a DTX packet, then only a DTX packet every 400 ms
    while the agent is silent; speech goes out as a new talkspurt (marker bit, RTP timestamp moved on
    by the time that passed, sequence numbers without a gap), and the peer decodes it."""
    packets: list[RtpPacket] = []
    arrivals: list[float] = []
    receiver = opus.peer.getReceivers()[0]
    handle = receiver._handle_rtp_packet

    async def tap(packet: RtpPacket, arrival_time_ms: int) -> None:
        packets.append(packet)
        arrivals.append(time.monotonic())
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = tap  # type: ignore[method-assign]
    await asyncio.sleep(0.3)
    stats = opus.media.outbound_stats
    assert stats is not None and stats.encoded_silence == 0 and stats.silent_frames == DTX_HANGOVER
    idle = len(packets)  # (the start's packets went out in the first 120 ms, some before the tap)
    await asyncio.sleep(0.9)
    refreshes = packets[idle:]
    assert 1 <= len(refreshes) <= 3 and {len(p.payload) for p in refreshes} == {1}
    assert stats.silent_frames == DTX_HANGOVER and stats.dtx_packets == 1 + len(refreshes)
    # 400 ms apart, on the RTP clock as on the wall clock (to within scheduling delays on a busy machine:
    # the exact arithmetic is test_dtx_resumes_on_the_clock's; a timestamp that did not follow the clock
    # would be off by the whole gap).
    for n in range(max(1, idle), len(packets)):
        gap_s = (packets[n].timestamp - packets[n - 1].timestamp) / 48000
        assert gap_s == pytest.approx(arrivals[n] - arrivals[n - 1], abs=0.15)
        assert 0.39 <= gap_s < 1.0  # (a timer on a loaded machine fires late, never early)
    quiet = len(packets)
    await opus.media.send_audio(tone(200, 48000, freq=1000))
    await asyncio.sleep(0.45)  # 200 ms of speech, 100 ms of hangover, DTX; the refresh is 400 ms on
    assert stats.frames == 10 and stats.encoded_silence == 1
    burst = packets[quiet:]
    assert len(burst) == 10 + DTX_HANGOVER + 1  # speech, the hangover, DTX
    assert [p.marker for p in burst] == [1] + [0] * (len(burst) - 1)
    assert {b - a for a, b in itertools.pairwise(p.timestamp for p in burst)} == {960}
    assert len(burst[-1].payload) == 1  # the DTX packet: Opus's TOC byte alone
    dtx = packets[quiet - 1]
    assert len(dtx.payload) == 1 and (burst[0].sequence_number - dtx.sequence_number) % 65536 == 1
    silent_s = (burst[0].timestamp - dtx.timestamp) / 48000
    assert silent_s == pytest.approx(arrivals[quiet] - arrivals[quiet - 1], abs=0.15)
    received = np.concatenate(opus.received).astype(np.float32)
    assert abs(dominant_frequency(received, 48000) - 1000) < 10


async def test_dtx_resumes_on_the_clock() -> None:
    """The track's own timeline, on a scripted clock: at the start and after speech, ``DTX_HANGOVER``
    silent packets then the DTX packet; while silent, no packet until audio comes or 400 ms passed
    (a DTX packet again); the next frame goes out at once with its timestamp moved on by exactly the
    silent time."""
    now = [100.0]
    track = OutboundAudioTrack(sample_rate=48000, clock=lambda: now[0])
    silence, dtx = track._encoder.silence, track._encoder.dtx
    assert silence is not None and dtx is not None
    assert len(dtx) == 1 and dtx[0] >> 3 == silence[0] >> 3  # the same Opus mode and frame size

    async def slot() -> av.Packet:
        packet = await track.recv()
        now[0] += 0.02
        return packet

    start = [await slot() for _ in range(DTX_HANGOVER + 1)]
    assert [bytes(p) for p in start] == [silence] * DTX_HANGOVER + [dtx]
    assert [p.pts for p in start] == [960 * n for n in range(DTX_HANGOVER + 1)] and track.quiet
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # nothing to send for another 380 ms
    now[0] += 1.2345  # the agent starts talking 1.2345 s after the next slot was due
    await track.put(tone(60, 48000, freq=700))
    first = await waiting
    assert first.pts == 960 * (DTX_HANGOVER + 1) + round(1.2345 * 48000)
    assert len(bytes(first)) > 1 and not track.quiet
    now[0] += 0.02
    rest = [await slot() for _ in range(2 + DTX_HANGOVER + 1)]
    assert [p.pts - first.pts for p in rest] == [960 * n for n in range(1, len(rest) + 1)]
    assert len(bytes(rest[2])) > 1 and bytes(rest[2]) != silence  # the encoded tail
    assert [bytes(p) for p in rest[3:]] == [silence] * (DTX_HANGOVER - 1) + [dtx] and track.quiet
    now[0] += 0.5  # past the refresh time: another DTX packet, at once, 520 ms after the last one
    refresh = await track.recv()
    assert bytes(refresh) == dtx and refresh.pts - rest[-1].pts == round(0.52 * 48000)
    assert track.stats.talkspurts == 1 and track.stats.dtx_packets == 3
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_the_marker_bit_starts_each_talkspurt() -> None:
    """aiortc marks every audio packet; :func:`mark_talkspurts` keeps the mark on the first packet and
    after a jump in timestamps only, and leaves RTCP and other streams alone."""
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    marked = mark_talkspurts(send, ssrc=42, step=960)
    stamps = [2**32 - 960, 0, 960, 60000, 60960]  # a wrap, then a talkspurt after a silence
    for seq, ts in enumerate(stamps):
        await marked(RtpPacket(payload_type=111, sequence_number=seq, timestamp=ts, ssrc=42, marker=1,
                               payload=b"x" * 40).serialize())  # fmt: skip
    other = RtpPacket(payload_type=111, sequence_number=9, timestamp=5, ssrc=7, marker=1).serialize()
    report = bytes(RtcpSrPacket(ssrc=42, sender_info=RtcpSenderInfo(0, 0, 0, 0)))
    await marked(other)
    await marked(report)
    parsed = [RtpPacket.parse(data) for data in sent[:5]]
    assert [p.marker for p in parsed] == [1, 0, 0, 1, 0]
    assert [p.timestamp for p in parsed] == stamps and {p.payload for p in parsed} == {b"x" * 40}
    assert sent[5:] == [other, report]


def pcmu(seq: int, level: int, *, ssrc: int = 7, ts: int | None = None) -> RtpPacket:
    return RtpPacket(
        payload_type=0,
        sequence_number=seq % 65536,
        timestamp=seq * 160 if ts is None else ts,
        ssrc=ssrc,
        payload=bytes([level]) * 160,
    )


OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
LEVELS = {0xF0: 120, 0xE0: 372, 0xD0: 876, 0xC0: 1884, 0xB0: 3900, 0xA0: 7932}


def frame_levels(frames: list[bytes]) -> list[int]:
    return [int(np.median(np.frombuffer(f, np.int16))) for f in frames]


def test_inbound_reorders_without_delay_and_conceals_losses() -> None:
    out: list[bytes] = []
    inbound = InboundAudio(codecs={0: PCMU_CODEC}, on_frame=out.append, reorder_packets=3)
    codes = list(LEVELS)
    inbound.push(pcmu(65534, codes[0]))
    assert len(out) == 1  # in-order packets pass at once
    inbound.push(pcmu(65536, codes[2]))  # arrives before 65535 (and wraps the sequence number)
    assert len(out) == 1
    inbound.push(pcmu(65535, codes[1]))
    assert len(out) == 3
    inbound.push(pcmu(65535, codes[1]))  # a duplicate
    for seq in (65538, 65539, 65540):  # 65537 is lost
        inbound.push(pcmu(seq, codes[3]))
    assert inbound.stats.lost_packets == 1 and inbound.stats.late_packets == 1
    assert inbound.stats.concealed_ms == pytest.approx(20)
    # One 20 ms frame per packet, in sequence order, the lost packet's 20 ms as silence.
    assert frame_levels(out) == [LEVELS[codes[i]] for i in (0, 1, 2)] + [0] + [LEVELS[codes[3]]] * 3


def test_inbound_fills_lost_time_but_not_the_senders_pauses() -> None:
    """A timestamp jump with consecutive sequence numbers is the sender pausing (DTX, silence
    suppression): nothing is filled (the listener counts a pause by the wall clock). Missing packets'
    time is filled, as long as the packets around them, up to ``max_gap_ms``, when the stream went on
    within ``max_gap_ms``; after a longer wait the listener has counted that time already."""
    out: list[bytes] = []
    now = [0.0]
    inbound = InboundAudio(
        codecs={0: PCMU_CODEC}, on_frame=out.append, reorder_packets=1, clock=lambda: now[0]
    )
    code = list(LEVELS)[2]
    inbound.push(pcmu(0, code, ts=0))
    now[0] += 0.42  # packets arrive as the sender's timestamps say (and a little later)
    inbound.push(pcmu(1, code, ts=160 + 8 * 400))  # 400 ms of DTX, no packet missing
    assert len(out) == 2 and inbound.stats.concealed_ms == 0
    assert inbound.stats.paused_ms == pytest.approx(400)
    now[0] += 0.42
    inbound.push(pcmu(3, code, ts=2 * 160 + 8 * 800))  # packet 2 lost inside another 400 ms pause
    assert inbound.stats.lost_packets == 1 and inbound.stats.concealed_ms == 0  # 420 ms counted already
    assert inbound.stats.paused_ms == pytest.approx(400 + 380)
    assert frame_levels(out) == [LEVELS[code]] * 3
    now[0] += 0.04
    inbound.push(pcmu(5, code, ts=4 * 160 + 8 * 800))  # packet 4 lost, the stream going on: filled
    assert inbound.stats.lost_packets == 2 and inbound.stats.concealed_ms == pytest.approx(20)
    assert frame_levels(out) == [LEVELS[code]] * 3 + [0] + [LEVELS[code]]
    now[0] += 0.08
    inbound.push(pcmu(8, code, ts=7 * 160 + 8 * 800))  # 2 lost, 80 ms since the last: filled
    assert inbound.stats.concealed_ms == pytest.approx(20 + 40)
    assert inbound.stats.paused_ms == pytest.approx(780)
    now[0] += 0.42
    inbound.push(pcmu(29, code, ts=28 * 160 + 8 * 800))  # 20 packets (400 ms) lost, 420 ms later: not
    assert inbound.stats.lost_packets == 2 + 2 + 20 and inbound.stats.concealed_ms == pytest.approx(60)
    assert inbound.stats.paused_ms == pytest.approx(400 + 380 + 300)  # beyond the 100 ms a loss can be
    assert len(out) == 5 + 3 + 1
    now[0] += 0.02
    inbound.push(pcmu(30, code, ts=29 * 160 + 8 * 800 + (1 << 30)))  # a jump of 37 hours, 20 ms later
    assert inbound.stats.paused_ms == pytest.approx(400 + 380 + 300 + 20)  # counted as what passed


def test_inbound_opus_is_decoded_to_16khz_at_once() -> None:
    """Opus goes straight to 16 kHz mono (libopus): one 640-byte frame per packet as it arrives, the
    caller's tone intact, a lost packet's time concealed, a corrupt packet counted and skipped."""
    assert libopus.load() is not None  # PyAV's wheel ships libopus
    encoder = FrameEncoder("opus", 48000)
    speech = tone(400, 48000, freq=440)
    payloads = [encoder.encode(speech[n * 1920 : (n + 1) * 1920]) for n in range(20)]
    out: list[bytes] = []
    inbound = InboundAudio(codecs={111: OPUS}, on_frame=out.append, reorder_packets=3)

    def packet(seq: int, payload: bytes) -> RtpPacket:
        return RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=3, payload=payload)

    for seq in range(10):
        inbound.push(packet(seq, payloads[seq]))
        assert len(out) == seq + 1 and len(out[-1]) == 640
    inbound.push(packet(10, b"\xff\xff\xff"))  # not Opus
    for seq in range(12, 20):  # 11 is lost
        inbound.push(packet(seq, payloads[seq]))
    assert inbound.stats.decode_errors == 1 and inbound.stats.lost_packets == 1
    assert inbound.stats.concealed_ms == pytest.approx(40)  # the corrupt packet's time and the lost one's
    assert len(out) == 20
    heard = np.frombuffer(b"".join(out[2:10]), np.int16).astype(np.float32)
    assert abs(dominant_frequency(heard, 16000) - 440) < 10


def test_dtmf_packets_are_reported_once_and_keep_the_audio_flowing() -> None:
    digits: list[DtmfEvent] = []
    receiver = DtmfReceiver(digits.append, clock_rate=8000)
    for duration, end in ((400, False), (800, False), (1200, True), (1200, True), (1200, True)):
        receiver.feed(bytes([5, (0x80 if end else 0) | 10]) + duration.to_bytes(2, "big"), 16000)
    receiver.feed(bytes([11, 10, 0, 160]), 32000)  # '#' whose end packets are lost...
    receiver.feed(bytes([1, 10, 0, 160]), 48000)  # ...is reported when the next key starts
    receiver.feed(bytes([99, 0x80, 0, 160]), 56000)  # not a DTMF event: ignored
    assert [(d.digit, d.duration_ms) for d in digits] == [("5", 150), ("#", 20)]


async def test_dtmf_through_the_media_receive_path(opus: Pair) -> None:
    transceiver = opus.media._pc.getTransceivers()[0]
    pt = next(
        c.payloadType for c in transceiver._codecs if c.name == "telephone-event" and c.clockRate == 48000
    )
    for seq, end in ((1, False), (2, True), (3, True)):
        packet = RtpPacket(
            payload_type=pt,
            sequence_number=seq,
            timestamp=960,
            ssrc=1,
            payload=bytes([9, 0x80 if end else 0, 0x0F, 0]),
        )
        await transceiver.receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    assert [d.digit for d in opus.digits] == ["9"]


def test_offers_we_cannot_answer() -> None:
    with pytest.raises(OfferRejected):
        check_offer("v=0\r\nm=audio 9 RTP/AVP 0\r\n")  # plain RTP: no ICE, no DTLS
    with pytest.raises(OfferRejected):
        check_offer("not sdp at all")


async def test_the_transport_flushes_on_barge_in() -> None:
    """``bot-interrupted`` empties the outgoing track before the message leaves (before the peer
    even connects, the queue is there to be emptied)."""
    peer = RTCPeerConnection()
    peer.addTransceiver("audio", direction="sendrecv")
    await peer.setLocalDescription(await peer.createOffer())
    transport = WebRTCTransport()
    media = PeerMedia(on_audio=transport.audio_received, on_state=transport.state_changed)
    transport.attach(media)
    try:
        await media.answer(peer.localDescription.sdp)
        await transport.send_audio(tone(1000, media.output_rate))
        await transport.send_message(rtvi.message("bot-tts-text", {"text": "bot-interrupted"}))
        assert media.outbound_stats is not None and media.outbound_stats.flushed_frames == 0
        await transport.send_message(rtvi.message("bot-interrupted"))
        assert media.outbound_stats.flushed_frames == 50
    finally:
        await peer.close()
        await media.close()


async def test_host_addresses_choose_the_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice leaves loopback out; ``host_addresses`` (CALLGATE_WEBRTC_HOST_ADDRESSES) puts it in."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", peer_module._host_addresses)  # no test patch
    peer = RTCPeerConnection()
    peer.addTransceiver("audio", direction="sendrecv")
    await peer.setLocalDescription(await peer.createOffer())
    chosen = PeerMedia(on_audio=lambda pcm: None, host_addresses=["127.0.0.1"])
    default = PeerMedia(on_audio=lambda pcm: None)
    try:
        hosts = [
            {line.split()[4] for line in answer.splitlines() if line.startswith("a=candidate")}
            for answer in (await chosen.answer(peer.localDescription.sdp),
                           await default.answer(peer.localDescription.sdp))
        ]  # fmt: skip
        assert hosts[0] == {"127.0.0.1"} and "127.0.0.1" not in hosts[1]
    finally:
        await peer.close()
        await chosen.close()
        await default.close()
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        Settings(webrtc_host_addresses=["localhost"])
