"""Callers' Opus decoded in the event loop's decoder process: each stream's frames come out as the
synchronous path gives them, in order, with its losses and corrupt packets in place, however the streams
interleave; a process that dies or hangs costs its packets their audio (silence in their place), never
the call, and the next packet starts a new one."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import threading
import time
from collections.abc import AsyncIterator

import pytest
import uvloop
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from callgate.pipeline.audio import tone
from callgate.realtime.media.decoding import DecodeStream, DecodeWorker
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


@pytest.fixture
async def worker() -> AsyncIterator[DecodeWorker]:
    worker = DecodeWorker(hang_timeout_s=1.0)
    yield worker
    worker.stop()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_each_stream_keeps_its_order_through_the_worker(worker: DecodeWorker) -> None:
    arrivals = {ssrc: packets_of(opus_stream(300 + 100 * ssrc, 60), ssrc=ssrc) for ssrc in range(4)}
    # Each stream's clock reads its latest packet's timestamp: packets come as the sender's timestamps
    # say (a lost packet's time is then filled, and a pause the sender skipped is counted whole).
    now = {ssrc: [0.0] for ssrc in arrivals}

    def arrive(ssrc: int, packet: RtpPacket) -> RtpPacket:
        now[ssrc][0] = packet.timestamp / 48000
        return packet

    expected: dict[int, list[bytes]] = {}
    for ssrc, packets in arrivals.items():  # the synchronous path, on the loop
        frames = expected[ssrc] = []
        inbound = InboundAudio(codecs={111: OPUS}, on_frame=frames.append, clock=lambda s=ssrc: now[s][0])
        for packet in packets:
            inbound.push(arrive(ssrc, packet))
    got: dict[int, list[bytes]] = {ssrc: [] for ssrc in arrivals}
    streams = {
        ssrc: InboundAudio(
            codecs={111: OPUS}, on_frame=got[ssrc].append, offload=worker, clock=lambda s=ssrc: now[s][0]
        )
        for ssrc in arrivals
    }
    queue = [(ssrc, p) for ssrc, packets in arrivals.items() for p in packets]
    random.Random(7).shuffle(queue)
    queue.sort(key=lambda item: arrivals[item[0]].index(item[1]))  # each stream in its own order
    for n, (ssrc, packet) in enumerate(queue):
        streams[ssrc].push(arrive(ssrc, packet))
        if n % 9 == 0:
            await asyncio.sleep(0)  # some batches while packets keep coming
    assert sum(len(frames) for frames in got.values()) < len(queue)  # not decoded on the loop
    await until_delivered(list(streams.values()))
    for ssrc, inbound in streams.items():
        assert got[ssrc] == expected[ssrc]  # every frame, in order, byte for byte
        stats = inbound.stats
        assert (stats.lost_packets, stats.decode_errors, stats.frames) == (1, 1, len(expected[ssrc]))
        assert stats.concealed_ms == pytest.approx(20 + 20)  # lost, corrupt
        assert stats.paused_ms == pytest.approx(40)  # skipped by the sender (DTX): not filled
    assert worker.packets == 4 * 58 and worker.batches < worker.packets


async def test_a_packet_libopus_refuses_keeps_its_place(worker: DecodeWorker) -> None:
    """A packet whose TOC byte looks fine but whose frames do not decode: silence of its duration
    where it was, counted as a decode error."""
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


async def test_the_worker_decodes_in_its_own_process_and_stops(worker: DecodeWorker) -> None:
    frames: list[bytes] = []
    inbound = InboundAudio(codecs={111: OPUS}, on_frame=frames.append, offload=worker)
    for seq, payload in enumerate(opus_stream(440, 3)):
        inbound.push(RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=1,
                               payload=payload))  # fmt: skip
    assert frames == []  # nothing yet: the batch has not even left
    pid = worker.process_id()
    assert pid is not None and pid != os.getpid() and is_running(pid)
    await until_delivered([inbound])
    assert len(frames) == 3 and all(any(frame) for frame in frames)
    assert worker.batches == 1  # three packets submitted within 2 ms: one batch, one answer
    inbound.close()
    inbound.push(RtpPacket(payload_type=111, sequence_number=3, timestamp=3 * 960, ssrc=1,
                           payload=opus_stream(440, 1)[0]))  # fmt: skip
    await asyncio.sleep(0.05)
    assert len(frames) == 3  # closed: dropped
    worker.stop()
    assert worker.process_id() is None and not is_running(pid)


def decoded(got: list[tuple[bytes, bool]]) -> list[bytes | bool]:
    """What a stream got: its passthroughs as they are; decoded packets as True (audio) or False."""
    return [pcm if len(pcm) != 640 else (any(pcm) and not failed) for pcm, failed in got]


async def wait_for(stream: DecodeStream) -> None:
    async with asyncio.timeout(5):
        while stream.pending:
            await asyncio.sleep(0.005)


async def test_passthrough_keeps_its_place_among_the_streams_packets(worker: DecodeWorker) -> None:
    got: dict[int, list[tuple[bytes, bool]]] = {1: [], 2: []}
    streams = {n: worker.open(lambda pcm, failed, n=n: got[n].append((pcm, failed))) for n in got}
    payloads = opus_stream(440, 4)
    streams[1].passthrough(b"a1")  # nothing ahead of it: at once
    assert got[1] == [(b"a1", False)]
    streams[1].decode(payloads[0], 320)
    streams[2].decode(payloads[0], 320)
    streams[1].passthrough(b"b1")
    streams[2].passthrough(b"b2")
    streams[1].decode(payloads[1], 320)
    streams[1].passthrough(b"c1")
    streams[1].passthrough(b"d1")
    streams[2].decode(payloads[1], 320)
    assert streams[1].pending == 5 and got[2] == []
    await wait_for(streams[1])
    await wait_for(streams[2])
    assert decoded(got[1]) == [b"a1", True, b"b1", True, b"c1", b"d1"]
    assert decoded(got[2]) == [True, b"b2", True]
    assert worker.packets == 4


async def test_a_killed_process_gives_silence_and_is_replaced(
    worker: DecodeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[tuple[bytes, bool]] = []
    stream = worker.open(lambda pcm, failed: got.append((pcm, failed)))
    payloads = opus_stream(440, 8)
    stream.decode(payloads[0], 320)
    await wait_for(stream)
    pid = worker.process_id()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # it reads nothing more...
    stream.decode(payloads[1], 320)
    stream.passthrough(b"after 1")
    stream.decode(payloads[2], 960)  # (a 60 ms packet, as far as its silence goes)
    await asyncio.sleep(0.02)  # ...the batch is in its pipe...
    assert stream.pending == 3
    with caplog.at_level(logging.DEBUG, logger="callgate.realtime.media.decoding"):
        os.kill(pid, signal.SIGKILL)  # ...and it dies with it unanswered
        await wait_for(stream)
        assert got[1:] == [(bytes(640), True), (b"after 1", False), (bytes(1920), True)]
        assert not is_running(pid) and worker.process_id() is None
        for payload in payloads[3:]:  # the next packets start a new process
            stream.decode(payload, 320)
        new_pid = worker.process_id()
        assert new_pid is not None and new_pid != pid
        await wait_for(stream)
    assert [failed or not any(pcm) for pcm, failed in got[4:]] == [False] * 5  # audio again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "silence" in warnings[0].getMessage()


async def test_a_hung_process_gives_silence_and_is_replaced(
    worker: DecodeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    frames: list[bytes] = []
    inbound = InboundAudio(codecs={111: OPUS}, on_frame=frames.append, offload=worker)
    payloads = opus_stream(440, 10)

    def push(seq: int) -> None:
        inbound.push(RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=1,
                               payload=payloads[seq]))  # fmt: skip

    push(0)
    await until_delivered([inbound])
    pid = worker.process_id()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, logger="callgate.realtime.media.decoding"):
            for seq in range(1, 5):
                push(seq)
                await asyncio.sleep(0.02)
            assert len(frames) == 1  # stuck
            await until_delivered([inbound])  # the watchdog (1 s here) gave up on it
        assert frames[1:] == [bytes(640)] * 4
        assert inbound.stats.decode_errors == 4 and inbound.stats.concealed_ms == pytest.approx(80)
        assert len(caplog.records) == 1 and "answered nothing" in caplog.records[0].getMessage()
        for seq in range(5, 10):
            push(seq)
        assert worker.process_id() not in (None, pid)
        await until_delivered([inbound])
        assert len(frames) == 10 and all(any(frame) for frame in frames[5:])
    finally:
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)
    assert not is_running(pid)


async def test_each_event_loop_has_its_own_process(worker: DecodeWorker) -> None:
    payloads = opus_stream(440, 5)

    async def decode_all() -> tuple[list[bytes], int | None]:
        got: list[bytes] = []
        stream = worker.open(lambda pcm, failed: got.append(pcm))
        for payload in payloads:
            stream.decode(payload, 320)
        pid = worker.process_id()
        await wait_for(stream)
        stream.close()
        return got, pid

    other: list[tuple[list[bytes], int | None]] = []

    thread = threading.Thread(target=lambda: other.append(asyncio.run(decode_all())))
    thread.start()
    ours = await decode_all()
    await asyncio.to_thread(thread.join)
    (theirs,) = other
    assert ours[1] is not None and theirs[1] is not None and ours[1] != theirs[1]
    assert ours[0] == theirs[0] and len(ours[0]) == 5 and all(any(pcm) for pcm in ours[0])
    assert is_running(theirs[1])  # its loop is closed...
    worker.open(lambda pcm, failed: None).close()  # ...which the next stream opened notices
    assert not is_running(theirs[1])


def test_a_stalled_loop_does_not_take_its_process_for_hung() -> None:
    """A loop that stalls with packets collected runs its overdue timers at once (uvloop before it reads):
    the batch leaves, and the watchdog, late itself, must not call the process hung for not having
    answered it yet."""

    async def scenario() -> tuple[list[bool], int | None, int | None]:
        worker = DecodeWorker(hang_timeout_s=0.3, start_timeout_s=0.3)
        try:
            got: list[bool] = []
            stream = worker.open(lambda pcm, failed: got.append(failed))
            payloads = opus_stream(440, 4)
            stream.decode(payloads[0], 320)
            await wait_for(stream)  # it is up...
            await asyncio.sleep(0.35)  # ...and its watchdog lapsed (nothing in flight)
            pid = worker.process_id()
            assert pid is not None
            for payload in payloads[1:]:
                stream.decode(payload, 320)
            # The process cannot answer before the late watchdog runs (the flush, the watchdog and this
            # timer all run at once, in this order, when the loop comes back), only after it.
            os.kill(pid, signal.SIGSTOP)
            asyncio.get_running_loop().call_later(0.5, os.kill, pid, signal.SIGCONT)
            time.sleep(0.6)  # the loop stalls past the flush and the watchdog
            await wait_for(stream)
            return got, pid, worker.process_id()
        finally:
            worker.stop()

    got, pid, after = uvloop.run(scenario())
    assert got == [False] * 4 and after == pid is not None
