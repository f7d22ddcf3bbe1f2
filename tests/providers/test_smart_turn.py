"""Smart Turn v3 from the installed pipecat-ai wheel: batched off the event loop, on real speech."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from callgate.providers.registry import EngineRegistry

smart_turn = pytest.importorskip("callgate.providers.smart_turn")


def espeak(text: str) -> bytes:
    """``text`` spoken by espeak-ng, 16 kHz PCM16, then 200 ms of silence (the pause the model sees)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed")
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "--stdout", text], capture_output=True, check=True)
    raw = subprocess.run(
        ["sox", "-t", "wav", "-", "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed", "-"],
        input=wav.stdout, capture_output=True, check=True,
    )  # fmt: skip
    return raw.stdout + bytes(6400)


@pytest.fixture(scope="module")
def model() -> smart_turn.SmartTurn:
    try:
        return smart_turn.SmartTurn()
    except Exception as exc:  # not installed here: the fallback is tested below
        pytest.skip(str(exc))


async def test_a_finished_sentence_and_a_trailing_filler_are_told_apart(model: smart_turn.SmartTurn) -> None:
    done, going_on = espeak("I would like to book an appointment for tomorrow."), espeak("My name is um")
    # Asked together from one loop: answered off the loop, each question its own answer.
    finished, unfinished = await asyncio.gather(model.predict(done), model.predict(going_on))
    assert finished > 0.8 and unfinished < 0.2
    assert await model.predict(done) == pytest.approx(finished, abs=1e-5)


async def test_a_cancelled_question_does_not_break_the_next(model: smart_turn.SmartTurn) -> None:
    task = asyncio.create_task(model.predict(bytes(32000)))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task})
    assert 0.0 <= await model.predict(espeak("Yes.")) <= 1.0


def test_the_registry_shares_one_model_or_none() -> None:
    registry = EngineRegistry()
    first = registry.end_of_turn()
    assert registry.end_of_turn() is first
