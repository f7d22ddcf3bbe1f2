"""A small real-time RTVI client for tests and benchmarks: streams PCM in real time, records everything."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection

FRAME_BYTES = 640  # 20 ms at 16 kHz PCM16


@dataclass
class Received:
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    audio: list[tuple[float, bytes]] = field(default_factory=list)


class RTClient:
    def __init__(self, url: str, *, mode: str | None = None, output_sample_rate: int = 16000) -> None:
        self.url = url
        self.mode = mode
        self.output_sample_rate = output_sample_rate
        self.got = Received()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.close_code: int | None = None
        self.closed_at: float | None = None

    async def __aenter__(self) -> Self:
        self._ws = await websockets.connect(self.url, max_size=None)
        ready: dict[str, Any] = {"version": "1.0.0", "audio": {"output_sample_rate": self.output_sample_rate}}
        if self.mode:
            ready["mode"] = self.mode
        await self.send("client-ready", ready)
        self._reader = asyncio.create_task(self._read())
        await self.wait_for("bot-ready")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._ws is not None
        await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await self._reader

    @property
    def handshake_headers(self) -> dict[str, str]:
        """The server's WebSocket handshake response headers (lower-case names)."""
        assert self._ws is not None and self._ws.response is not None
        return {k.lower(): v for k, v in self._ws.response.headers.raw_items()}

    async def send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        assert self._ws is not None
        await self._ws.send(json.dumps({"label": "rtvi-ai", "type": type_, "id": "c", "data": data or {}}))

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                now = time.monotonic()
                if isinstance(raw, bytes):
                    self.got.audio.append((now, raw))
                else:
                    self.got.messages.append((now, json.loads(raw)))
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.closed_at = time.monotonic()
            self._changed.set()

    async def stream(self, pcm16: bytes, *, realtime: bool = True) -> float:
        """Send audio in 20 ms frames paced like a microphone; returns the monotonic time it ended."""
        assert self._ws is not None
        start = time.monotonic()
        for n, offset in enumerate(range(0, len(pcm16), FRAME_BYTES)):
            if realtime:
                delay = start + n * 0.02 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._ws.send(pcm16[offset : offset + FRAME_BYTES])
        return time.monotonic()

    async def silence(self, seconds: float) -> None:
        await self.stream(b"\x00\x00" * int(16000 * seconds))

    async def silence_until_closed(self, *, timeout: float) -> float:
        """A quiet microphone until the server ends the call; when the connection closed (monotonic)."""
        async with asyncio.timeout(timeout):
            while self.closed_at is None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await self.silence(0.2)
        return self.closed_at

    def messages(self, type_: str, *, since: float = 0.0) -> list[dict[str, Any]]:
        return [m for t, m in self.got.messages if m["type"] == type_ and t >= since]

    async def wait_for(self, type_: str, *, since: float = 0.0, timeout: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                found = self.messages(type_, since=since)
                if found:
                    return found[0]
                if self._reader is not None and self._reader.done():
                    raise ConnectionError(f"closed ({self.close_code}) before {type_}")
                self._changed.clear()
                await self._changed.wait()

    def audio_since(self, since: float) -> np.ndarray:
        data = b"".join(chunk for t, chunk in self.got.audio if t >= since)
        return np.frombuffer(data, dtype=np.int16)

    def first_audio_after(self, since: float) -> float | None:
        return next((t for t, _ in self.got.audio if t >= since), None)

    def last_audio_time(self) -> float | None:
        return self.got.audio[-1][0] if self.got.audio else None


def nonsilent_seconds(samples: np.ndarray, rate: int, *, threshold: int = 300) -> float:
    """Seconds of 20 ms frames whose RMS exceeds ``threshold`` (int16 units)."""
    frame = rate // 50
    n = len(samples) // frame
    if n == 0:
        return 0.0
    frames = samples[: n * frame].astype(np.float64).reshape(n, frame)
    loud = np.sqrt((frames**2).mean(axis=1)) > threshold
    return float(loud.sum()) * 0.02


def onset_seconds(samples: np.ndarray, rate: int, *, threshold: int = 300) -> float:
    """Where the first 20 ms frame louder than ``threshold`` (RMS, int16 units) starts, in seconds."""
    frame = rate // 50
    for i in range(len(samples) // frame):
        chunk = samples[i * frame : (i + 1) * frame].astype(np.float64)
        if np.sqrt((chunk**2).mean()) > threshold:
            return i * 0.02
    raise ValueError("no sound in these samples")


async def next_message(ws: ClientConnection, type_: str, *, timeout: float = 15) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes):
                continue
            msg = json.loads(raw)
            if msg["type"] == type_:
                return msg


def rtvi(type_: str, data: dict[str, Any] | None = None) -> str:
    return json.dumps({"label": "rtvi-ai", "type": type_, "id": "t1", "data": data or {}})
