"""The call-control channel: end a call from any node; the node holding its session acts.

Live sessions register a handler here. ``publish_end`` calls the local handler when the session is on
this node, and otherwise publishes on Redis (when configured) so the node that holds it acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from callgate.domain.lifecycle import EndReason

log = logging.getLogger(__name__)
CHANNEL = "callgate:control"
Handler = Callable[[EndReason], Awaitable[None]]


class CallControl:
    def __init__(self, redis: Redis | None) -> None:
        self._redis = redis
        self._local: dict[str, Handler] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def live_call_ids(self) -> list[str]:
        return list(self._local)

    @property
    def live_count(self) -> int:
        """Sessions running on this node."""
        return len(self._local)

    def register(self, call_id: str, handler: Handler) -> Callable[[], None]:
        self._local[call_id] = handler
        self._idle.clear()

        def unregister() -> None:
            if self._local.get(call_id) is handler:
                del self._local[call_id]
                if not self._local:
                    self._idle.set()

        return unregister

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no session runs on this node (True), or ``timeout_s`` passes (False)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        return self._idle.is_set()

    async def deliver_end(self, call_id: str, reason: EndReason) -> bool:
        """Tell this node's session of ``call_id`` to end; False if it is not here."""
        handler = self._local.get(call_id)
        if handler is None:
            return False
        await handler(reason)
        return True

    async def publish_end(self, call_id: str, reason: EndReason) -> None:
        handler = self._local.get(call_id)
        if handler is not None:
            await handler(reason)
            return
        if self._redis is not None:
            try:
                await self._redis.publish(
                    CHANNEL, json.dumps({"op": "end", "call_id": call_id, "reason": reason})
                )
            except RedisError:
                log.warning("could not publish call end on Redis", extra={"call": call_id})

    async def start(self) -> None:
        if self._redis is not None and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="call-control")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> None:
        assert self._redis is not None
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._dispatch(message["data"])
            except RedisError:
                log.warning("call-control subscription lost; reconnecting")
                await asyncio.sleep(1)

    async def _dispatch(self, raw: bytes | str) -> None:
        try:
            msg = json.loads(raw)
            call_id, reason = str(msg["call_id"]), EndReason(msg["reason"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed call-control message")
            return
        handler = self._local.get(call_id)
        if handler is not None:
            await handler(reason)
