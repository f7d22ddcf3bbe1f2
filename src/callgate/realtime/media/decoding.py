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
uses the other core. Like the Silero batcher (``providers/silero/batcher.py``) there is no fixed tick: a
packet that finds the worker idle is decoded at once; while the worker is busy (its last batch started
less than ``MIN_BATCH_INTERVAL_S`` ago) the next packets gather into the next batch, so at most one
thread wake-up and one loop callback per batch, not per packet.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from callgate.realtime.media.opus import OpusDecoder, OpusError

__all__ = ["DecodeStream", "DecodeWorker", "shared_worker"]

log = logging.getLogger(__name__)

MIN_BATCH_INTERVAL_S = 0.001
"""Batches start at least this far apart: with packets trickling in from hundreds of calls (10,000 a
second at 200), a batch every millisecond holds ten of them, and a packet waits at most ~1 ms more."""

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
        self._lock = threading.Lock()
        self._pending: list[_Item] = []
        self._wake = threading.Event()
        """Set while items wait for the worker (or it is asked to stop); cleared by the worker."""
        self._thread: threading.Thread | None = None
        self._stop_requested: threading.Thread | None = None
        self.batches = 0
        """Batches decoded (for benchmarks and tests)."""
        self.packets = 0
        """Packets decoded."""

    def open(self, on_pcm: OnPcm) -> DecodeStream:
        """A new stream of the running event loop; ``on_pcm`` gets its audio there, in order."""
        return DecodeStream(self, asyncio.get_running_loop(), on_pcm)

    def submit(self, item: _Item) -> None:
        with self._lock:
            self._pending.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="callgate-opus", daemon=True)
                self._thread.start()
        if not self._wake.is_set():  # once per batch: the hot path stays a lock and an append
            self._wake.set()

    def stop(self) -> None:
        """Finish what was submitted, then stop the thread (a later item starts it again)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stop_requested = thread
            self._wake.set()
        thread.join()

    # ------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        me = threading.current_thread()
        last_start = -math.inf
        while True:
            self._wake.wait()
            delay = last_start + MIN_BATCH_INTERVAL_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # busy: let the next packets join this batch
            with self._lock:
                batch, self._pending = self._pending, []
                stopping = self._stop_requested is me
                if not stopping:
                    self._wake.clear()  # under the lock: an item queued after this sets it again
                if not batch and stopping:
                    self._thread = self._stop_requested = None
                    return
            if batch:
                last_start = time.monotonic()
                self._run(batch)

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
