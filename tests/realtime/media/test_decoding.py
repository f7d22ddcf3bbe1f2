"""Callers' Opus decoded on the worker thread: each stream's frames come out as the synchronous path
gives them, in order, with its losses and corrupt packets in place, however the streams interleave."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from callgate.pipeline.audio import tone
from callgate.realtime.media.decoding import DecodeWorker
from callgate.realtime.media.encoder import FrameEncoder
from callgate.realtime.media.inbound import InboundAudio

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


def opus_stream(freq: int, count: int) -> list[bytes]:
    encoder = FrameEncoder("opus", 48000)
    speech = tone(count * 20, 48000, freq=freq)
    return [encoder.encode(speech[n * 1920 : (n + 1) * 1920]) for n in range(count)]


def packets_of(payloads: list[bytes], *, ssrc: int) -> list[RtpPacket]:
    """One stream as it arrives: one packet lost, two swapped, a corrupt one, a 40 ms timestamp gap."""
    packets = []
    for seq, payload in enumerate(payloads):
        ts = seq * 960 + (1920 if seq >= 30 else 0)  # the sender skipped 40 ms (DTX) before packet 30
        body = b"\xff\xff\xff" if seq == 20 else payload  # not Opus
        packets.append(
            RtpPacket(payload_type=111, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=body)
        )
    del packets[11]  # lost
    packets[5], packets[6] = packets[6], packets[5]  # reordered
    return packets


async def until_delivered(streams: list[InboundAudio]) -> None:
    async with asyncio.timeout(5):
        while any(s._offload is not None and s._offload.pending for s in streams):
            await asyncio.sleep(0.005)


async def test_each_stream_keeps_its_order_through_the_worker() -> None:
    worker = DecodeWorker()
    try:
        arrivals = {ssrc: packets_of(opus_stream(300 + 100 * ssrc, 60), ssrc=ssrc) for ssrc in range(4)}
        expected: dict[int, list[bytes]] = {}
        for ssrc, packets in arrivals.items():  # the synchronous path, on the loop
            frames = expected[ssrc] = []
            inbound = InboundAudio(codecs={111: OPUS}, on_frame=frames.append)
            for packet in packets:
                inbound.push(packet)
        got: dict[int, list[bytes]] = {ssrc: [] for ssrc in arrivals}
        streams = {
            ssrc: InboundAudio(codecs={111: OPUS}, on_frame=got[ssrc].append, offload=worker)
            for ssrc in arrivals
        }
        queue = [(ssrc, p) for ssrc, packets in arrivals.items() for p in packets]
        random.Random(7).shuffle(queue)
        queue.sort(key=lambda item: arrivals[item[0]].index(item[1]))  # each stream in its own order
        for n, (ssrc, packet) in enumerate(queue):
            streams[ssrc].push(packet)
            if n % 9 == 0:
                await asyncio.sleep(0)  # some batches while packets keep coming
        assert sum(len(frames) for frames in got.values()) < len(queue)  # not decoded on the loop
        await until_delivered(list(streams.values()))
        for ssrc, inbound in streams.items():
            assert got[ssrc] == expected[ssrc]  # every frame, in order, byte for byte
            stats = inbound.stats
            assert (stats.lost_packets, stats.decode_errors, stats.frames) == (1, 1, len(expected[ssrc]))
            assert stats.concealed_ms == pytest.approx(20 + 20 + 40)  # lost, corrupt, skipped
        assert worker.packets == 4 * 58 and worker.batches < worker.packets
    finally:
        worker.stop()


async def test_a_packet_libopus_refuses_keeps_its_place() -> None:
    """A packet whose TOC byte looks fine but whose frames do not decode: silence of its duration
    where it was, counted as a decode error."""
    worker = DecodeWorker()
    try:
        payloads = opus_stream(440, 6)
        payloads[2] = bytes([payloads[2][0] | 3, 0x42])  # code 3: 2 frames of 20 ms, no frame data
        frames: list[bytes] = []
        inbound = InboundAudio(codecs={111: OPUS}, on_frame=frames.append, offload=worker)
        for seq, payload in enumerate(payloads):
            inbound.push(RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=1,
                                   payload=payload))  # fmt: skip
        await until_delivered([inbound])
        assert inbound.stats.decode_errors == 1 and inbound.stats.concealed_ms == pytest.approx(40)
        assert len(frames) == 7 and frames[2] == frames[3] == bytes(640)  # its 40 ms, then the rest
        assert any(frames[4]) and any(frames[1])
    finally:
        worker.stop()


async def test_the_worker_decodes_on_its_own_thread_and_stops() -> None:
    worker = DecodeWorker()
    frames: list[bytes] = []
    inbound = InboundAudio(codecs={111: OPUS}, on_frame=frames.append, offload=worker)
    for seq, payload in enumerate(opus_stream(440, 3)):
        inbound.push(RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=1,
                               payload=payload))  # fmt: skip
    assert frames == []  # nothing yet: the loop has not run the worker's callback
    thread = worker._thread
    assert thread is not None and thread.name == "callgate-opus" and thread is not threading.current_thread()
    await until_delivered([inbound])
    assert len(frames) == 3
    inbound.close()
    inbound.push(RtpPacket(payload_type=111, sequence_number=3, timestamp=3 * 960, ssrc=1,
                           payload=opus_stream(440, 1)[0]))  # fmt: skip
    await until_delivered([inbound])
    assert len(frames) == 3  # closed: dropped
    worker.stop()
    assert not thread.is_alive() and worker._thread is None
