"""Voice calls for ``bench/latency.py``: a microphone that never stops sending, and everything the agent
sends back, timestamped at arrival. :class:`WSCall` speaks the RTVI WebSocket protocol (PCM16 frames both
ways), :class:`RTCCall` WebRTC (an aiortc peer, Opus both ways, see ``_webrtc.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import numpy as np
from aiortc.rtp import RtpPacket

from _server import WSClient, binary_frame, frames_of, noise_pcm
from _webrtc import OpusLevel, PcmTrack, Peer

AUDIBLE_PEAK = 32  # -60 dBFS: the first agent frame above it is the agent's first audio


def peak_of(pcm16: bytes) -> int:
    samples = np.frombuffer(pcm16, dtype="<i2")
    return int(np.abs(samples.astype(np.int32)).max()) if samples.size else 0


class Call:
    """One voice call: a microphone that never stops sending, and everything received, timestamped.
    Subclasses connect it to a transport; their sender calls :meth:`next_frame` once per 20 ms slot."""

    transport = ""

    def __init__(self) -> None:
        self.audio: list[float] = []  # arrival times of audible agent audio frames
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()
        self.pending: list[bytes] = []
        self.mark_index = -1
        self.mark_sent_at: float | None = None
        self.onset_index = -1
        self.onset_sent_at: float | None = None
        """Send time of frame ``onset_index`` of the utterance (:meth:`speak`'s ``voiced_from``)."""
        self._spoken = 0
        self.send_lateness: list[float] = []
        self._noise = frames_of(noise_pcm(2.0, seed=7))
        self._n = 0

    # the microphone
    def next_frame(self, due: float) -> bytes:
        """The frame of the slot due at ``due``: the utterance being spoken, else the room's noise."""
        now = time.monotonic()
        self.send_lateness.append(now - due)
        if self.pending:
            frame = self.pending.pop(0)
            if self._spoken == self.onset_index:
                self.onset_sent_at = now
                self.changed.set()
            self._spoken += 1
            if self.mark_index == 0:
                self.mark_sent_at = now
                self.changed.set()
            self.mark_index -= 1
        else:
            frame = self._noise[self._n % len(self._noise)]
        self._n += 1
        return frame

    def speak(self, frames: list[bytes], voiced_until: int, *, voiced_from: int = -1) -> None:
        """Queue an utterance; ``mark_sent_at`` becomes the send time of frame ``voiced_until`` (and
        ``onset_sent_at`` that of frame ``voiced_from``, if given)."""
        self.mark_sent_at = None
        self.mark_index = voiced_until
        self.onset_sent_at, self.onset_index, self._spoken = None, voiced_from, 0
        self.pending = list(frames)

    # what comes back
    def _heard(self, t: float, peak: int) -> None:
        if peak >= AUDIBLE_PEAK:
            self.audio.append(t)
            self.changed.set()

    def _on_message(self, t: float, msg: dict[str, Any]) -> None:
        self.messages.append((t, msg))
        self.changed.set()

    # the transport
    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    # waiting
    def find(self, type_: str, since: float) -> tuple[float, dict[str, Any]] | None:
        return next(((t, m) for t, m in self.messages if t >= since and m.get("type") == type_), None)

    def ended(self) -> bool:
        return self.closed or any(
            m.get("type") == "server-message" and m.get("data", {}).get("type") == "call-ended"
            for _, m in self.messages
        )

    async def wait_for(self, type_: str, *, since: float, timeout: float) -> tuple[float, dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while True:
                found = self.find(type_, since)
                if found is not None:
                    return found
                if self.closed:
                    raise ConnectionError(f"{self.transport} closed while waiting for {type_}")
                self.changed.clear()
                await self.changed.wait()

    async def wait_until(self, predicate: Any, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not predicate():
                    self.changed.clear()
                    await self.changed.wait()
                return True
        return False


class WSCall(Call):
    """Over the RTVI WebSocket: PCM16 binary frames both ways."""

    transport = "websocket"

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__()
        self.url = str(info["websocket_url"])
        self.ws: WSClient | None = None
        self._sender: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.ws = await WSClient.connect(self.url, self._on_audio, self._on_message)
        self.send("client-ready", {"version": "1.0.0", "audio": {"output_sample_rate": 16000}})
        await self.wait_for("bot-ready", since=0.0, timeout=30)
        self._sender = asyncio.create_task(self._send_forever())

    def _on_audio(self, t: float, payload: bytes) -> None:
        self._heard(t, peak_of(payload))

    async def _send_forever(self) -> None:
        assert self.ws is not None
        start = time.monotonic()
        n = 0
        while not self.ws.closed.is_set():
            due = start + n * 0.02
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.ws.write(binary_frame(self.next_frame(due)))
            n += 1

    def send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        if self.ws is not None:
            self.ws.send(type_, data)

    @property
    def closed(self) -> bool:
        return self.ws is not None and self.ws.closed.is_set()

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self.ws is not None:
            self.ws.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ws.closed.wait(), 5)


class RTCCall(Call):
    """Over WebRTC: an aiortc peer, Opus both ways, RTVI on the data channel. Agent audio is taken at
    RTP arrival (decoded with libopus); aiortc's own receive path runs too, for the comparison row."""

    transport = "webrtc"

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__()
        self.offer_url = str(info["webrtc_offer_url"])
        self.token = str(info["token"])
        self.ice_servers: list[dict[str, Any]] = list(info.get("ice_servers") or [])
        self.peer: Peer | None = None
        self._level = OpusLevel()

    async def open(self) -> None:
        track = PcmTrack(self.next_frame)
        track.lateness = None  # next_frame records it
        self.peer = Peer(
            self.offer_url, self.token, track=track, on_rtp=self._on_rtp, on_message=self._on_message,
            on_state=lambda _state: self.changed.set(), ice_servers=self.ice_servers, aiortc_audio=True,
        )  # fmt: skip
        await self.peer.join()

    def _on_rtp(self, t: float, packet: RtpPacket) -> None:
        self._heard(t, self._level.peak(packet))

    def aiortc_first_audio(self, since: float) -> float | None:
        """When the first audible agent audio after ``since`` came out of aiortc's receive path."""
        assert self.peer is not None
        heard = (t for t, pcm in self.peer.got.audio if t >= since and peak_of(pcm) >= AUDIBLE_PEAK)
        return next(heard, None)

    def send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        if self.peer is not None and self.peer.channel.readyState == "open":
            self.peer.send(type_, data)

    @property
    def closed(self) -> bool:
        return self.peer is not None and self.peer.closed

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()
