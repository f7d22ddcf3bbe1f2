"""Callers' Opus decoded off the event loop: one decoder process per event loop, in batches across calls.

Each WebRTC call's inbound stream (:class:`~callgate.realtime.media.inbound.InboundAudio`) keeps its jitter
buffer, loss concealment and timeline on the event loop, and hands its packets here in order through a
:class:`DecodeStream`. The loop collects the packets of all its streams for at most ``FLUSH_INTERVAL_S``
(2 ms; one timer per batch, not per packet) and writes them to its decoder process in one batch (a struct
header per item, then the payload: ``opus_process.py``); the process decodes them with each stream's own
libopus decoder (it holds them all, created on a stream's first packet, freed when it closes) and answers
the batch with one write, which the loop reads with one ``add_reader`` wake-up. Each stream gets its audio
in the order it submitted it. A stream's already-decoded audio (silence for lost packets, other codecs)
queues behind its packets still on their way (:meth:`DecodeStream.passthrough`) on the loop, without
crossing the pipe, so that it keeps its place.

Why a process: decoding was the largest cost of a WebRTC call's own on the loop (~30 us per packet, 50
packets a second per call). A worker thread (ctypes releases the GIL while libopus runs) took it off the
loop, but in the sessions benchmark it dropped caller audio at 100 WebRTC sessions per process where
decoding on the loop still kept up (likely because the thread needs the GIL for everything around each
libopus call, so the loop and it take turns). A process shares no GIL with the server.

Measured costs (``bench``-style micro run, 200 streams at 50 packets a second, uvloop, on the 2-core VM
this was written on): the loop spends ~1.3 us per packet submitted, ~10 us per batch written and ~55 us
per batch read and handed out (~23 packets, the streams' own handling of their PCM included): 0.11 cores
of the loop in all, against 0.26 decoding on the loop and 0.08 with the worker thread (whose GIL hold is
not in that figure); the process uses 0.23 cores. A packet waits ~3 ms (p50; p99 ~5 ms on a quiet
machine) from submission to its PCM. Waking the process costs more than that: a write to a pipe that a
blocked reader waits on cost the loop ~150 us on this VM, so the process polls while batches come
(``opus_process.py``).

In ``bench/sessions.py --transport webrtc`` (no priority boosts, same 2-core machine, same half hour,
2026-12-07): one server process sustained 150 WebRTC sessions (twice; 175 borderline, 200 failed) where
the worker thread sustained 100 (150 failed, twice). At 200 the loop used 0.77 cores and this process
0.25: the machine (the load generator shares its 2 cores) ran out before the loop did.

A decoder process that dies (or answers nothing for ``HANG_TIMEOUT_S``, ``START_TIMEOUT_S`` before its
first answer, then it is killed) never costs a call: everything in flight is answered with silence of
each packet's duration (as a packet libopus refuses, ``failed``), one WARNING is logged, and the next
packet starts a new process (if the last one answered nothing, not before ``RESTART_DELAY_S`` after it
started; until then packets are answered with silence at once). Its decoders' state is lost, so the first
packet of each stream decodes as a fresh stream's would. A loop's process stops ``IDLE_STOP_S`` after its
last stream closes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from callgate.realtime.media import opus_process as wire
from callgate.realtime.media.opus import library_path

__all__ = ["DecodeStream", "DecodeWorker", "shared_worker"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.002
"""A packet waits at most this long on the loop before its batch is written to the process."""
HANG_TIMEOUT_S = 0.5
"""A process with packets in flight that answers nothing for this long is killed (and replaced)."""
START_TIMEOUT_S = 3.0
"""A new process that has answered nothing yet is hung only after this long."""
RESTART_DELAY_S = 1.0
"""A process that answered nothing is replaced no sooner than this after it started (no start loop)."""
IDLE_STOP_S = 10.0
"""A loop's process stops this long after its last stream closed."""
PIPE_BYTES = 1 << 20
"""Pipe capacity asked for (Linux; default 64 KiB), so a busy moment rarely splits a write."""
READ_BYTES = 1 << 17
"""Read at most this much at once (a batch of 200 packets' PCM is ~130 KB)."""
_CHILD = [sys.executable, "-I", "-S", str(Path(wire.__file__))]

OnPcm = Callable[[bytes, bool], None]
"""Called on the stream's event loop with each item's PCM16 and whether it was a packet that could not be
decoded (then the PCM is silence of the packet's duration)."""


class DecodeStream:
    """One stream's queue through its event loop's decoder process. Use from that loop only."""

    def __init__(self, pipe: _LoopDecoder, stream_id: int, on_pcm: OnPcm, *, sample_rate: int,
                 channels: int) -> None:  # fmt: skip
        self._pipe = pipe
        self.id = stream_id
        self.on_pcm = on_pcm
        self.sample_rate = sample_rate
        self.channels = channels
        self.closed = False
        self._queue: deque[bytes | None] = deque()  # in submission order; None: a packet being decoded
        self._started = False  # the process may hold a decoder for it

    @property
    def pending(self) -> int:
        """Items submitted and not yet handed back."""
        return len(self._queue)

    def decode(self, payload: bytes, samples: int) -> None:
        """Decode ``payload`` (``samples`` per channel, at the stream's rate), in the process."""
        if self.closed:
            return
        self._queue.append(None)
        self._started = True
        self._pipe.submit(self, payload, samples)

    def passthrough(self, pcm16: bytes) -> None:
        """Hand ``pcm16`` back as it is, after everything submitted before it (at once if nothing is)."""
        if self._queue:
            self._queue.append(pcm16)
        elif not self.closed:
            self.on_pcm(pcm16, False)

    def close(self) -> None:
        """Drop whatever is still on its way back and free the stream's decoder."""
        if not self.closed:
            self.closed = True
            self._queue.clear()
            self._pipe.closed(self)

    def _answer(self, pcm16: bytes, failed: bool) -> None:
        """Its oldest packet's audio, then whatever queued behind it."""
        queue = self._queue
        if self.closed or not queue:
            return
        queue.popleft()
        self.on_pcm(pcm16, failed)
        while queue and (queued := queue[0]) is not None:
            queue.popleft()
            self.on_pcm(queued, False)


class _LoopDecoder:
    """One event loop's decoder process, its pipes and the batch being collected. Use from that loop."""

    def __init__(self, worker: DecodeWorker, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._worker = worker
        self.process: subprocess.Popen[bytes] | None = None
        self._to = self._from = -1  # our ends of its stdin and stdout
        self._items: list[bytes] = []  # the batch being collected
        self._count = 0
        self._in_flight: deque[tuple[DecodeStream, int]] = deque()  # (stream, silence bytes), in order
        self._unsent = bytearray()
        self._writing = False
        self._received = bytearray()
        self._chunk = bytearray(READ_BYTES)  # read into, not allocated per read
        self._flush: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._answered = self._answered_at_check = self._answered_at_start = 0
        self._check_due = 0.0
        self._started_at = -RESTART_DELAY_S
        self._warned = False  # a WARNING was logged and no batch has been answered since
        self._streams = self._last_id = 0

    def open(self, on_pcm: OnPcm, *, sample_rate: int, channels: int) -> DecodeStream:
        self._streams += 1
        self._last_id += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.process is None:
            self._start()  # now: its start-up (~15 ms, more on a busy machine) would delay the first packets
        return DecodeStream(self, self._last_id, on_pcm, sample_rate=sample_rate, channels=channels)

    def closed(self, stream: DecodeStream) -> None:
        self._streams -= 1
        if self.loop.is_closed():  # closed late (the process goes when the worker notices the loop is gone)
            return
        if stream._started and self.process is not None:
            self._add(wire.ITEM.pack(wire.OP_CLOSE, stream.id, 0, 0, 0))
        if self._streams == 0 and self._idle is None:
            self._idle = self.loop.call_later(IDLE_STOP_S, self.stop)

    def submit(self, stream: DecodeStream, payload: bytes, samples: int) -> None:
        silence = samples * stream.channels * 2
        if self.process is None and not self._start():
            stream._answer(bytes(silence), True)
            return
        self._in_flight.append((stream, silence))
        item = wire.ITEM.pack(wire.OP_DECODE, stream.id, stream.sample_rate, stream.channels, len(payload))
        self._add(item, payload)
        if self._watchdog is None:
            self._arm(self.loop.time())

    def _add(self, *parts: bytes) -> None:
        self._items.extend(parts)
        self._count += 1
        if self._flush is None:
            self._flush = self.loop.call_later(FLUSH_INTERVAL_S, self._send_batch)

    # ------------------------------------------------------------------ the process

    def _start(self) -> bool:
        now = time.monotonic()
        path = library_path()
        # The last one died young without answering anything: not a new process for every packet.
        futile = now - self._started_at < RESTART_DELAY_S and self._answered == self._answered_at_start
        if path is None or futile:
            return False
        self._started_at, self._answered_at_start = now, self._answered
        try:
            # S603: our own script and the libopus path we found, no shell.
            process = subprocess.Popen([*_CHILD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603
        except OSError as exc:
            self._warn("could not be started (%s)", exc)
            return False
        assert process.stdin is not None and process.stdout is not None
        self._to, self._from = process.stdin.fileno(), process.stdout.fileno()
        for fd in (self._to, self._from):
            with contextlib.suppress(OSError, AttributeError):  # not Linux, or above the system's limit
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            os.set_blocking(fd, False)
        self.loop.add_reader(self._from, self._read)
        self.process = process
        log.debug("Opus decoder process %d started", process.pid)
        return True

    def _send_batch(self) -> None:
        self._flush = None
        if not self._count or self.process is None:
            return
        body = b"".join(self._items)
        self._unsent += wire.BATCH.pack(len(body), self._count)
        self._unsent += body
        self._items, self._count = [], 0
        if not self._writing:
            self._write()

    def _write(self) -> None:
        try:
            sent = os.write(self._to, self._unsent)
        except BlockingIOError:
            sent = 0
        except OSError as exc:  # it is gone
            self._fail(f"could not be written to ({exc})")
            return
        del self._unsent[:sent]
        if self._unsent and not self._writing:
            self.loop.add_writer(self._to, self._write)
            self._writing = True
        elif not self._unsent and self._writing:
            self.loop.remove_writer(self._to)
            self._writing = False

    def _read(self) -> None:
        try:
            size = os.readv(self._from, [self._chunk])
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(f"could not be read from ({exc})")
            return
        if not size:
            self._fail("exited")
            return
        with memoryview(self._chunk) as chunk:
            self._received += chunk[:size]
        self._deliver()

    def _deliver(self) -> None:
        """Hand every complete batch in ``_received`` to its streams."""
        received, in_flight, offset, header, result = (
            self._received, self._in_flight, 0, wire.BATCH.size, wire.RESULT.size
        )  # fmt: skip
        with memoryview(received) as view:
            while len(received) - offset >= header:
                length, count = wire.BATCH.unpack_from(received, offset)
                end = offset + header + length
                if len(received) < end:
                    break
                position = offset + header
                for _ in range(count):
                    status, size = wire.RESULT.unpack_from(received, position)
                    position += result
                    stream, silence = in_flight.popleft()
                    if status == wire.STATUS_OK:
                        pcm, failed = view[position : position + size].tobytes(), False
                        position += size
                    else:
                        pcm, failed = bytes(silence), True
                    _hand(stream, pcm, failed)
                    if self._in_flight is not in_flight:  # a consumer stopped the process
                        return
                offset = end
                self._answered += 1
                self._worker.batches += 1
                self._worker.packets += count
        if offset:
            del received[:offset]
            self._warned = False

    def _check(self) -> None:
        """The watchdog, armed while packets are in flight: a process that answered nothing since the
        last check is hung, unless the loop itself ran late (then nobody could tell; look again)."""
        self._watchdog = None
        if not self._in_flight or self.process is None:
            return
        now, timeout = self.loop.time(), self._timeout()
        if now - self._check_due < timeout / 2 and self._answered == self._answered_at_check:
            self._read()  # answers may be waiting: uvloop runs its overdue timers before its reads
            if self._answered == self._answered_at_check:
                self._fail(f"answered nothing for {timeout:g} s")
                return
        self._arm(now)

    def _arm(self, now: float) -> None:
        self._answered_at_check, self._check_due = self._answered, now + self._timeout()
        self._watchdog = self.loop.call_at(self._check_due, self._check)

    def _timeout(self) -> float:
        if self._answered == self._answered_at_start:  # it may still be starting (slow on a busy machine)
            return self._worker.start_timeout_s
        return self._worker.hang_timeout_s

    def _fail(self, reason: str) -> None:
        """The process is dead or hung: stop it; everything in flight gets silence, in order."""
        pid = self.process.pid if self.process is not None else None
        in_flight = self._in_flight
        self._reset()
        self._warn("%s; %d packets in flight get silence, a new process starts with the next packet",
                   f"{pid} {reason}", len(in_flight))  # fmt: skip
        for stream, silence in in_flight:
            _hand(stream, bytes(silence), True)

    def _warn(self, message: str, *args: object) -> None:
        (log.debug if self._warned else log.warning)("Opus decoder process " + message, *args)
        self._warned = True

    def _reset(self) -> None:
        """Stop the process and forget what was on its way."""
        for handle in (self._flush, self._watchdog):
            if handle is not None:
                handle.cancel()
        self._flush = self._watchdog = None
        process, self.process = self.process, None
        self._items, self._count, self._in_flight = [], 0, deque()
        self._unsent.clear()
        self._received = bytearray()  # not cleared: _deliver may be reading it
        if process is None:
            return
        if not self.loop.is_closed():
            self.loop.remove_reader(self._from)
            if self._writing:
                self.loop.remove_writer(self._to)
        self._writing = False
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        process.kill()
        process.wait()

    def stop(self) -> None:
        """Stop the process; what is in flight is dropped (the next packet starts a new one)."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        for stream, _ in self._in_flight:
            stream._queue.clear()
        self._reset()


def _hand(stream: DecodeStream, pcm16: bytes, failed: bool) -> None:
    try:
        stream._answer(pcm16, failed)
    except Exception:  # one stream's consumer must not cost the others in the batch their audio
        log.exception("a decoded packet's consumer failed")


class DecodeWorker:
    """Decoder processes, one per event loop (started with its first packet). Use :func:`shared_worker`;
    streams come from :meth:`open`."""

    def __init__(
        self, *, hang_timeout_s: float = HANG_TIMEOUT_S, start_timeout_s: float = START_TIMEOUT_S
    ) -> None:
        self.hang_timeout_s = hang_timeout_s
        self.start_timeout_s = start_timeout_s
        self._loops: dict[asyncio.AbstractEventLoop, _LoopDecoder] = {}
        self._lock = threading.Lock()
        self.batches = 0
        """Batches decoded (for benchmarks and tests)."""
        self.packets = 0
        """Packets decoded (answered by a process, decoded or refused)."""

    def open(self, on_pcm: OnPcm, *, sample_rate: int = 16000, channels: int = 1) -> DecodeStream:
        """A new stream of the running event loop; ``on_pcm`` gets its audio there, in order, as PCM16 at
        ``sample_rate`` with ``channels`` interleaved."""
        loop = asyncio.get_running_loop()
        with self._lock:
            stale = [decoder for other, decoder in self._loops.items() if other.is_closed()]
            for decoder in stale:
                del self._loops[decoder.loop]
            decoder = self._loops.get(loop) or self._loops.setdefault(loop, _LoopDecoder(self, loop))
        for old in stale:
            old.stop()
        return decoder.open(on_pcm, sample_rate=sample_rate, channels=channels)

    def process_id(self) -> int | None:
        """The pid of the running event loop's decoder process, if it runs."""
        decoder = self._loops.get(asyncio.get_running_loop())
        process = decoder.process if decoder is not None else None
        return process.pid if process is not None else None

    def stop(self) -> None:
        """Stop every loop's process (call from that loop, or once it stopped); a later packet starts a
        new one."""
        with self._lock:
            decoders = list(self._loops.values())
        for decoder in decoders:
            decoder.stop()


_shared: DecodeWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> DecodeWorker:
    """The server process's worker (each event loop's decoder process starts with its first packet)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DecodeWorker()
            atexit.register(_shared.stop)
        return _shared
