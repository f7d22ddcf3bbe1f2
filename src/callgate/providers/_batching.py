"""One worker thread per model that runs every call's pending requests as one batch.

The shape shared by the embedded models (Silero VAD, Smart Turn, Whisper): calls :meth:`BatchWorker.submit`
requests from their event loops; the worker thread takes every request pending at that moment (up to
``max_batch``), runs them with one ``run_batch`` call and hands each result back to the event loop that
asked, one loop callback per batch. The native runtimes (onnxruntime, CTranslate2) release the GIL while
they run, so the event loop keeps its core; one thread per model and process, never a pool per call.

There is no fixed tick: a request that finds the worker idle runs at once; while the worker is busy, the
next requests gather into the next batch (and a batch starts at least ``min_interval_s`` after the
previous one, so that requests trickling in from hundreds of calls are not each run alone).

Each worker reports its :class:`~callgate.providers.backlog.Backlog` (requests waiting or running, and
how long the oldest has waited) under a role such as ``"stt"``; :func:`callgate.providers.backlog.backlog`
adds up a role's workers for metrics and admission control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from callgate.errors import ProviderError
from callgate.providers.backlog import Backlog, register

__all__ = ["BatchWorker"]

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(slots=True, eq=False)
class _Request(Generic[In, Out]):
    item: In
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Out]
    submitted: float


RunBatch = Callable[[list[In]], Sequence[Out | BaseException]]
"""Runs one batch on the worker thread: one result (or the exception of that request) per item, in order."""


class BatchWorker(Generic[In, Out]):
    """A model's worker thread. It starts on the first :meth:`submit` and after :meth:`stop`."""

    def __init__(
        self,
        run_batch: RunBatch[In, Out],
        *,
        name: str,
        role: str,
        max_batch: int,
        min_interval_s: float = 0.0,
    ) -> None:
        self._run_batch = run_batch
        self.name = name
        self.max_batch = max_batch
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._pending: list[_Request[In, Out]] = []
        self._running: list[_Request[In, Out]] = []
        self._wake = threading.Event()
        """Set while requests wait for the worker (or it is asked to stop); cleared by the worker."""
        self._thread: threading.Thread | None = None
        self._stop_requested: threading.Thread | None = None
        self.batches = 0
        """Batches run (for benchmarks and tests)."""
        self.items = 0
        """Requests answered by a batch (cancelled ones that were skipped do not count)."""
        register(role, self)

    def submit(self, item: In) -> asyncio.Future[Out]:
        """Queue ``item``; the future (of the running loop) gets its result. A request whose future is
        cancelled before its batch starts is skipped; once started, only its result is dropped."""
        loop = asyncio.get_running_loop()
        request = _Request(item, loop, loop.create_future(), time.monotonic())
        with self._lock:
            self._pending.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
        if not self._wake.is_set():  # once per batch: the hot path stays a lock and an append
            self._wake.set()
        return request.future

    def backlog(self, now: float | None = None) -> Backlog:
        now = time.monotonic() if now is None else now
        with self._lock:
            waiting = [r for r in (*self._running, *self._pending) if not r.future.done()]
        if not waiting:
            return Backlog()
        return Backlog(depth=len(waiting), oldest_s=max(0.0, now - min(r.submitted for r in waiting)))

    def stop(self) -> None:
        """Finish the requests already submitted, then stop the worker (a later request restarts it)."""
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
            # Busy a moment ago: let the next requests join this batch (sleeping releases the GIL;
            # submitters do not wake us). Idle for min_interval_s already: run at once.
            delay = last_start + self.min_interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self._lock:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                stopping = self._stop_requested is me
                if not self._pending and not stopping:
                    self._wake.clear()  # under the lock: a request queued after this sets it again
                if not batch and stopping:
                    self._thread = self._stop_requested = None
                    return
                batch = [r for r in batch if not r.future.cancelled()]  # e.g. the caller went on
                self._running = batch
            if batch:
                last_start = time.monotonic()
                self._run(batch)
            with self._lock:
                self._running = []

    def _run(self, batch: list[_Request[In, Out]]) -> None:
        outcome: Sequence[Out | BaseException] | BaseException
        try:
            outcome = self._run_batch([r.item for r in batch])
            if len(outcome) != len(batch):
                raise RuntimeError(f"{len(outcome)} results for {len(batch)} requests")
        except Exception as exc:  # never kill the worker: fail this batch's callers instead
            log.exception("%s: a batch of %d failed", self.name, len(batch))
            outcome = ProviderError(f"{self.name}: inference failed: {exc}")
            outcome.__cause__ = exc
        self.batches += 1
        self.items += len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request[In, Out], Out | BaseException]]] = {}
        for i, request in enumerate(batch):
            result = outcome if isinstance(outcome, BaseException) else outcome[i]
            by_loop.setdefault(request.loop, []).append((request, result))
        for loop, results in by_loop.items():
            # RuntimeError: that loop is closed, so nobody waits for these results any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, results)


def _deliver(results: list[tuple[_Request[In, Out], Out | BaseException]]) -> None:
    """On the caller's event loop: resolve each request's future (unless its caller gave up)."""
    for request, result in results:
        if request.future.done():
            continue
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)
