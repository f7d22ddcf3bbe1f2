"""A WebRTC caller in Python (aiortc) for tests and benchmarks: RTVI on the ``rtvi`` data channel,
caller audio paced in real time on an audio track, the agent's audio recorded at 16 kHz."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aioice.ice
import av
import httpx
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.support.live import LiveServer

FRAME = 320  # 20 ms at 16 kHz


def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice leaves 127.0.0.1 out of its host candidates; tests run on loopback only."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class CallerTrack(MediaStreamTrack):
    """16 kHz mono PCM16 queued with :meth:`put`, one 20 ms frame every 20 ms, silence when idle."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._frames: deque[bytes] = deque()
        self._start: float | None = None
        self._n = 0

    def put(self, pcm16: bytes) -> None:
        for i in range(0, len(pcm16), FRAME * 2):
            self._frames.append(pcm16[i : i + FRAME * 2].ljust(FRAME * 2, b"\0"))

    @property
    def pending_s(self) -> float:
        return len(self._frames) * 0.02

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self._n * 0.02 - time.monotonic()))
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(self._frames.popleft() if self._frames else bytes(FRAME * 2))
        frame.pts, frame.sample_rate, frame.time_base = self._n * FRAME, 16000, fractions.Fraction(1, 16000)
        self._n += 1
        return frame


@dataclass
class Received:
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    audio: list[tuple[float, bytes]] = field(default_factory=list)


class RTCClient:
    """``async with RTCClient(offer_url, token) as c:`` joins (offer → answer → client-ready → bot-ready).

    ``codec`` offers that audio codec alone, plus ``telephone-event`` at its clock rate if
    ``telephone_event`` (without ``codec`` the offer has every codec, telephone-event included)."""

    def __init__(
        self,
        offer_url: str,
        token: str,
        *,
        mode: str | None = None,
        codec: str | None = None,
        telephone_event: bool = False,
    ) -> None:
        self.offer_url = offer_url
        self.token = token
        self.mode = mode
        self.codec = codec
        self.telephone_event = telephone_event
        self.got = Received()
        self.track = CallerTrack()
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("rtvi")
        self.answer_sdp = ""
        self.answer_headers: dict[str, str] = {}
        """The offer's HTTP answer headers (lower-case names)."""
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)

    async def __aenter__(self) -> Self:
        transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        if self.codec is not None:
            caps = RTCRtpSender.getCapabilities("audio").codecs
            chosen = [c for c in caps if c.name.lower() == self.codec.lower()]
            if self.telephone_event:
                rates = {c.clockRate for c in chosen}
                chosen += [c for c in caps if c.name == "telephone-event" and c.clockRate in rates]
            transceiver.setCodecPreferences(chosen)
        self.channel.on("message", self._on_message)
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(
                self.offer_url,
                json={"sdp": self.pc.localDescription.sdp, "type": "offer"},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        if r.status_code != 200:
            await self.pc.close()
            raise httpx.HTTPStatusError(r.text, request=r.request, response=r)
        self.answer_sdp = r.json()["sdp"]
        self.answer_headers = {k.lower(): v for k, v in r.headers.items()}
        await self.pc.setRemoteDescription(RTCSessionDescription(self.answer_sdp, "answer"))
        async with asyncio.timeout(10):
            await opened.wait()
        ready: dict[str, Any] = {"version": "1.0.0"}
        if self.mode:
            ready["mode"] = self.mode
        self.send("client-ready", ready)
        await self.wait_for("bot-ready")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def _on_message(self, raw: str | bytes) -> None:
        if isinstance(raw, str):
            self.got.messages.append((time.monotonic(), json.loads(raw)))
            self._changed.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                frame.pts = None
                pcm = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in self._resampler.resample(frame))
                self.got.audio.append((time.monotonic(), pcm))

    def send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        self.channel.send(json.dumps({"label": "rtvi-ai", "type": type_, "id": "c", "data": data or {}}))

    async def say(self, pcm16: bytes, *, then_silence_s: float = 0.0) -> float:
        """Queue caller audio on the track and wait until it has been sent; returns when it ended."""
        self.track.put(pcm16 + bytes(int(16000 * then_silence_s) * 2))
        while self.track.pending_s > 0:
            await asyncio.sleep(0.02)
        return time.monotonic()

    def messages(self, type_: str, *, since: float = 0.0) -> list[dict[str, Any]]:
        return [m for t, m in self.got.messages if m["type"] == type_ and t >= since]

    async def wait_for(self, type_: str, *, since: float = 0.0, timeout: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                found = self.messages(type_, since=since)
                if found:
                    return found[0]
                self._changed.clear()
                await self._changed.wait()

    def audio_between(self, start: float, end: float = float("inf")) -> np.ndarray:
        data = b"".join(chunk for t, chunk in self.got.audio if start <= t < end)
        return np.frombuffer(data, dtype=np.int16)


async def browser_offer() -> str:
    """A real offer (audio + data channel), as a browser would post it."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("rtvi")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def post_offer(
    live: LiveServer,
    call: dict[str, object],
    token: str | None,
    *,
    sdp: str | None = None,
    query: bool = False,
) -> httpx.Response:
    url = str(call["webrtc_offer_url"])
    headers = {} if token is None or query else {"Authorization": f"Bearer {token}"}
    params = {"token": token} if query and token else {}
    body = {"sdp": sdp if sdp is not None else await browser_offer(), "type": "offer"}
    return await live.world.client.post(url, json=body, headers=headers, params=params)


def problem(r: httpx.Response) -> str:
    assert r.headers["content-type"] == "application/problem+json", r.text
    code: str = r.json()["code"]
    return code
