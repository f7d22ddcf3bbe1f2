"""Caller key presses (DTMF) on their way to the agent.

Two ways in: RFC 4733 telephone-events, decoded by the media bridge, and SIP INFO carrying
``application/dtmf-relay`` (``Signal=5`` / ``Duration=160``) or ``application/dtmf`` (``5``).

Keys are gathered into one typed caller turn, ``"DTMF 1234#"``, sent when ``#`` is pressed or when no
key has come for :data:`INTER_DIGIT_S` (the way an IVR reads a PIN). The agent receives it like any typed
message, so it is answered as a turn and stored in the transcript as the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from callgate.clock import Clock

log = logging.getLogger(__name__)

KEYS = frozenset("0123456789*#ABCD")
INTER_DIGIT_S = 1.5
MAX_KEYS = 32
CONTENT_TYPES = ("application/dtmf-relay", "application/dtmf")
TURN_PREFIX = "DTMF "


class DtmfError(ValueError):
    """An INFO body that is not a key press."""


def parse_info(content_type: str | None, body: bytes) -> str:
    """The key an INFO request carries; raises :class:`DtmfError`."""
    try:
        text = body.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise DtmfError("the body is not ASCII") from exc
    if content_type == "application/dtmf":
        key = text
    elif content_type == "application/dtmf-relay":
        fields = dict(
            (name.strip().lower(), value.strip())
            for name, sep, value in (line.partition("=") for line in text.splitlines())
            if sep
        )
        key = fields.get("signal", "")
    else:
        raise DtmfError(f"unsupported content type {content_type!r}")
    key = key.upper()
    if key not in KEYS:
        raise DtmfError(f"not a DTMF key: {key[:8]!r}")
    return key


class DigitCollector:
    """Gathers keys and hands each finished sequence to ``deliver``; owns its timer task."""

    def __init__(
        self,
        deliver: Callable[[str], Awaitable[None]],
        *,
        clock: Clock,
        inter_digit_s: float = INTER_DIGIT_S,
    ) -> None:
        self._deliver = deliver
        self._clock = clock
        self._inter_digit_s = inter_digit_s
        self._keys: list[str] = []
        self._timer: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._closed = False

    def press(self, key: str) -> None:
        if self._closed or key not in KEYS:
            return
        self._keys.append(key)
        if self._timer is not None:
            self._timer.cancel()
        if key == "#" or len(self._keys) >= MAX_KEYS:
            self._timer = None
            self._send(self._take())
        else:
            self._timer = asyncio.create_task(self._flush_later(), name="dtmf-inter-digit")

    def _take(self) -> str:
        keys, self._keys = "".join(self._keys), []
        return keys

    def _send(self, keys: str) -> None:
        task = asyncio.create_task(self._deliver_safely(keys), name="dtmf-deliver")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _flush_later(self) -> None:
        await self._clock.sleep(self._inter_digit_s)
        self._timer = None
        self._send(self._take())

    async def _deliver_safely(self, keys: str) -> None:
        try:
            await self._deliver(f"{TURN_PREFIX}{keys}")
        except Exception:
            log.exception("could not pass DTMF to the agent")

    async def aclose(self) -> None:
        """Drop keys not yet sent (the call is over) and wait for the tasks this collector started."""
        self._closed = True
        tasks = [*self._deliveries, *([self._timer] if self._timer else [])]
        self._timer = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
