"""A scripted fake end-of-turn model: one probability per question, after a delay on the clock."""

from __future__ import annotations

from collections.abc import Iterable

from callgate.clock import Clock
from callgate.errors import ProviderError
from callgate.pipeline.interfaces import EndOfTurnCapabilities, EndOfTurnModel


class FakeEndOfTurn(EndOfTurnModel):
    """``verdicts`` are returned one per :meth:`predict` that is not cancelled (a float, or an exception
    to raise); after the script runs out, ``default``."""

    def __init__(
        self,
        clock: Clock,
        verdicts: Iterable[float | ProviderError] = (),
        *,
        delay: float = 0.05,
        default: float = 1.0,
    ) -> None:
        self.capabilities = EndOfTurnCapabilities()
        self.clock = clock
        self.delay = delay
        self.default = default
        self._script = list(verdicts)
        self.requests: list[bytes] = []
        """Audio of each question, as sent."""

    async def predict(self, pcm16: bytes) -> float:
        self.requests.append(pcm16)
        await self.clock.sleep(self.delay)
        verdict = self._script.pop(0) if self._script else self.default
        if isinstance(verdict, ProviderError):
            raise verdict
        return verdict
