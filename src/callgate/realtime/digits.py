"""Caller key presses (DTMF) on their way to the agent, the same for every transport.

Keys come in from RFC 4733 telephone-events in the media (WebRTC, SIP: decoded by
:mod:`callgate.realtime.media.telephone_events`), from SIP INFO (:mod:`callgate.realtime.sip.info_keys`)
and from RTVI ``dtmf`` client messages. Each call has one :class:`DigitCollector`, owned by its
:class:`~callgate.realtime.session.CallSession` (transports press keys with
:meth:`~callgate.realtime.session.CallSession.press_key`). It gathers keys into one typed caller turn,
``"DTMF 1234#"``, sent when ``#`` is pressed, when :data:`MAX_KEYS` keys have been gathered, or when no
key has come for :data:`INTER_DIGIT_S` (the way an IVR reads a PIN); the session answers that turn like
anything the caller typed, and the transcript stores it as the caller's turn.
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
TURN_PREFIX = "DTMF "

Deliver = Callable[[str], Awaitable[None]]


class DigitCollector:
    """Gathers keys and hands each finished sequence to ``deliver``; owns its timer task."""

    def __init__(self, deliver: Deliver, *, clock: Clock, inter_digit_s: float = INTER_DIGIT_S) -> None:
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
