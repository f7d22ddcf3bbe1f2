"""Callers' Opus decoded off the event loop: one worker thread per process, in batches across calls.

Each WebRTC call's inbound stream (:class:`~callgate.realtime.media.inbound.InboundAudio`) keeps its jitter
buffer, loss concealment and timeline on the event loop, and hands its packets here in order through a
:class:`DecodeStream`. A worker thread takes every packet pending at that moment, decodes them with each
stream's own libopus decoder and hands the PCM back to the event loop, one loop callback per batch, where
each stream gets its audio in the order it submitted it. A stream's already-decoded audio (silence for
lost packets, other codecs) may be queued behind its packets (:meth:`DecodeStream.passthrough`) so that it
keeps its place.

Why: decoding was the largest cost of a WebRTC call's own on the loop (14% of the loop at 75 calls, ~30 us
per packet, 50 packets a second per call). ctypes releases the GIL while libopus runs, so the decoding
uses the other core.

Handing a packet over costs the event loop one append to a deque (thread-safe in CPython), no lock and
no system call: while packets keep coming the worker polls every ``POLL_INTERVAL_S`` (2 ms; a batch holds
the packets of 20 calls at 200) and takes what is there; only after ``IDLE_POLLS`` empty polls does it
wait on an event, which the next packet sets. Waking a thread from the loop for every batch (a futex
call each time, as ``threading.Event.set`` does) cost the loop more than the decoding it moved off.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from callgate.realtime.media.opus import OpusDecoder, OpusError

__all__ = ["DecodeStream", "DecodeWorker", "shared_worker"]

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.002
"""While packets keep coming, the worker looks for them this often: a packet waits at most ~2 ms."""
IDLE_POLLS = 25
"""Empty polls (50 ms without a packet) before the worker sleeps until the next one."""

OnPcm = Callable[[bytes, bool], None]
"""Called on the stream's event loop with each item's PCM16 and whether it was a packet libopus refused
(then the PCM is silence of the packet's duration)."""


@dataclass(eq=False)
class DecodeStream:
    """One stream's queue through the worker. Use from its event loop only."""

    worker: DecodeWorker
    loop: asyncio.AbstractEventLoop
    on_pcm: OnPcm
    pending: int = 0
    """Items submitted and not yet handed back."""
    closed: bool = field(default=False)

    def decode(self, decoder: OpusDecoder, payload: bytes, samples: int) -> None:
        """Decode ``payload`` (``samples`` long, at the decoder's rate) with ``decoder`` (used by the
        worker only from now on)."""
        self.pending += 1
        self.worker.submit((self, decoder, payload, samples))

    def passthrough(self, pcm16: bytes) -> None:
        """Hand ``pcm16`` back as it is, after everything submitted before it."""
        self.pending += 1
        self.worker.submit((self, None, pcm16, 0))

    def close(self) -> None:
        """Drop whatever is still on its way back."""
        self.closed = True


_Item = tuple[DecodeStream, OpusDecoder | None, bytes, int]
_Result = tuple[DecodeStream, bytes, bool]


class DecodeWorker:
    """The worker thread and its queue. Use :func:`shared_worker`; streams come from :meth:`open`."""

    def __init__(self) -> None:
        self._pending: deque[_Item] = deque()
        self._wake = threading.Event()
        self._sleeping = False
        """The worker waits on ``_wake`` (set by the next item); while False it polls."""
        self._lock = threading.Lock()  # starting and stopping the thread
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0
        """Batches decoded (for benchmarks and tests)."""
        self.packets = 0
        """Packets decoded."""

    def open(self, on_pcm: OnPcm) -> DecodeStream:
        """A new stream of the running event loop; ``on_pcm`` gets its audio there, in order."""
        return DecodeStream(self, asyncio.get_running_loop(), on_pcm)

    def submit(self, item: _Item) -> None:
        self._pending.append(item)
        if self._thread is None:
            self._start()
        if self._sleeping:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._work, name="callgate-opus", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Finish what was submitted, then stop the thread (a later item starts it again)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stopping = True
            self._wake.set()
        thread.join()
        with self._lock:
            self._thread = None
        if self._pending:  # submitted while it stopped
            self._start()

    # ------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        pending, empty = self._pending, 0
        while True:
            batch = []
            while pending:
                batch.append(pending.popleft())
            if batch:
                empty = 0
                self._run(batch)
            elif self._stopping:
                return
            else:
                empty += 1
            if empty < IDLE_POLLS:
                time.sleep(POLL_INTERVAL_S)
                continue
            self._sleeping = True
            if not pending and not self._stopping:  # after the flag: an item queued from now on wakes us
                self._wake.wait()
            self._wake.clear()
            self._sleeping = False
            empty = 0

    def _run(self, batch: list[_Item]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        decoded = 0
        for stream, decoder, data, samples in batch:
            failed = False
            if decoder is not None:
                decoded += 1
                try:
                    data = decoder.decode(data)
                except OpusError as exc:
                    log.debug("could not decode an RTP packet: %s", exc)
                    data, failed = bytes(samples * 2), True
            by_loop.setdefault(stream.loop, []).append((stream, data, failed))
        self.batches += 1
        self.packets += decoded
        for loop, results in by_loop.items():
            # RuntimeError: that loop is closed, so nobody waits for these results any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, results)


def _deliver(results: list[_Result]) -> None:
    """On the streams' event loop: each item's PCM to its stream, in the order submitted."""
    for stream, pcm, failed in results:
        stream.pending -= 1
        if not stream.closed:
            stream.on_pcm(pcm, failed)


_shared: DecodeWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> DecodeWorker:
    """The process's worker (its thread starts with the first packet)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DecodeWorker()
            atexit.register(_shared.stop)
        return _shared
