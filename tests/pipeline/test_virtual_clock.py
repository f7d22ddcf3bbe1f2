from __future__ import annotations

import asyncio

import pytest

from callgate.providers.fake import VirtualClock


async def test_sleepers_wake_in_time_order_at_their_due_time() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("b", 0.3), ("a", 0.1), ("c", 0.3)]]
    await clock.advance(0.2)
    assert woke == [("a", 0.1)]
    assert clock.monotonic() == pytest.approx(0.2)
    await clock.advance(1.0)
    assert woke == [("a", 0.1), ("b", 0.3), ("c", 0.3)]
    await asyncio.gather(*tasks)


async def test_time_stands_still_without_advance() -> None:
    clock = VirtualClock()
    task = asyncio.create_task(clock.sleep(0.01))
    for _ in range(100):
        await asyncio.sleep(0)
    assert not task.done()
    assert clock.pending_sleepers == 1
    task.cancel()
    await asyncio.wait({task})
    assert clock.pending_sleepers == 0
    await clock.advance(1.0)  # a cancelled sleeper is skipped


async def test_run_until_times_out_in_virtual_time() -> None:
    clock = VirtualClock()
    with pytest.raises(TimeoutError):
        await clock.run_until(lambda: False, within=0.5)
    assert clock.monotonic() == pytest.approx(0.5, abs=0.01)
