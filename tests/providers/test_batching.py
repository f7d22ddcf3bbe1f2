"""The batched worker every embedded model runs on: requests that arrive while it is busy share the next
batch, each caller gets its own answer, a cancelled request is skipped, a failing batch fails only its
callers, and the backlog (depth, oldest wait) is what admission control reads.

The model here is a plain function that waits on a gate, so that the test decides when a batch ends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from callgate.errors import ProviderError
from callgate.providers._batching import BatchWorker
from callgate.providers.backlog import Backlog, backlog


class GatedModel:
    """Doubles each number; a batch blocks until the test opens the gate (once per batch)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Semaphore(0)
        self.started = threading.Event()

    def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        if not self.gate.acquire(timeout=10):
            raise TimeoutError("the test never let this batch finish")
        if any(i < 0 for i in items):
            raise ValueError("negative input")
        return [ValueError("odd") if i == 7 else 2 * i for i in items]


async def wait_started(model: GatedModel) -> None:
    assert await asyncio.to_thread(model.started.wait, 5)
    model.started.clear()


@pytest.fixture
def model() -> GatedModel:
    return GatedModel()


@pytest.fixture
async def worker(model: GatedModel) -> BatchWorker[int, int]:
    w: BatchWorker[int, int] = BatchWorker(model, name="callgate-test", role="test", max_batch=3)
    yield w
    for _ in range(10):
        model.gate.release()
    await asyncio.to_thread(w.stop)


async def test_requests_that_arrive_while_busy_share_the_next_batch(
    model: GatedModel, worker: BatchWorker[int, int]
) -> None:
    first = worker.submit(1)
    await wait_started(model)  # the worker is busy with [1]
    later = [worker.submit(i) for i in (2, 3, 4, 5)]
    model.gate.release()
    assert await first == 2
    await wait_started(model)
    model.gate.release()
    await wait_started(model)
    model.gate.release()
    assert await asyncio.gather(*later) == [4, 6, 8, 10]
    assert model.batches == [[1], [2, 3, 4], [5]]  # max_batch 3: the rest waits for the next one
    assert (worker.batches, worker.items) == (3, 5)


async def test_backlog_counts_waiting_and_running_requests(
    model: GatedModel, worker: BatchWorker[int, int]
) -> None:
    assert worker.backlog() == Backlog() and backlog("test") == Backlog()
    first = worker.submit(1)
    await wait_started(model)
    await asyncio.sleep(0.5)
    second = worker.submit(2)
    now = worker.backlog()
    assert now.depth == 2 and 0.5 <= now.oldest_s < 5  # the running one is the oldest
    assert backlog("test").depth == 2  # the process-wide view of the role
    model.gate.release()
    await first
    await wait_started(model)
    later = worker.backlog()
    assert later.depth == 1 and later.oldest_s < 0.5  # only the second one, which came later
    model.gate.release()
    await second
    assert worker.backlog() == Backlog()


async def test_a_cancelled_request_is_skipped(model: GatedModel, worker: BatchWorker[int, int]) -> None:
    first = worker.submit(1)
    await wait_started(model)
    gone, kept = worker.submit(2), worker.submit(3)
    gone.cancel()
    assert worker.backlog().depth == 2  # the cancelled one no longer counts
    model.gate.release()
    await wait_started(model)
    model.gate.release()
    assert (await first, await kept) == (2, 6)
    assert model.batches == [[1], [3]]


async def test_errors_reach_their_own_callers_and_the_worker_goes_on(
    model: GatedModel, worker: BatchWorker[int, int]
) -> None:
    first = worker.submit(1)
    await wait_started(model)
    odd, fine = worker.submit(7), worker.submit(2)  # one batch: one request's own error
    model.gate.release()
    await wait_started(model)
    model.gate.release()
    assert await first == 2
    with pytest.raises(ValueError, match="odd"):
        await odd
    assert await fine == 4
    broken = worker.submit(-1)  # the whole batch fails: its callers get a ProviderError
    await wait_started(model)
    model.gate.release()
    with pytest.raises(ProviderError, match="callgate-test: inference failed"):
        await broken
    after = worker.submit(4)
    await wait_started(model)
    model.gate.release()
    assert await after == 8
    assert model.batches == [[1], [7, 2], [-1], [4]]


async def test_the_worker_stops_and_restarts_on_demand(
    model: GatedModel, worker: BatchWorker[int, int]
) -> None:
    def threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "callgate-test"]

    assert not threads()
    model.gate.release()
    assert await worker.submit(1) == 2
    assert len(threads()) == 1
    await asyncio.to_thread(worker.stop)
    assert not threads()
    model.gate.release()
    assert await worker.submit(2) == 4
    assert len(threads()) == 1
