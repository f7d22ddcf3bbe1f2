"""The load-generator processes of ``bench/sessions.py``: many real-time sessions per process.

The orchestrator (``sessions.py``) starts ``--clients`` of these with :func:`worker_main` and drives them
over a pipe: ``connect`` a batch of calls, ``window-start``/``window-end`` around a measurement window
(answered with the window's figures), ``stop``.

* WebSocket sessions use the hand-rolled :class:`~_server.WSClient`; one ticker sends every session's
  pre-built frame, the sessions spread over 10 phases of the 20 ms period.
* ``--speech``: every WebSocket session is a caller who talks (``_speech.py``): it loops a script of
  real speech from its own offset, and keeps its final transcripts and the server's per-turn STT time
  (RTVI ``metrics``) for the orchestrator to score.
* WebRTC sessions are aiortc peers (``_webrtc.py``): each one's RTP sender paces its own microphone
  track, which hands over pre-encoded Opus packets (no encoder per peer); agent audio is timestamped at
  RTP arrival and never decoded. The server sends a continuous stream (silence between replies), so
  every WebRTC session's downlink is judged for lateness, not only the probes'.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import time
from multiprocessing.connection import Connection
from typing import Any

from aiortc.rtp import RtpPacket

from _server import (
    WSClient,
    binary_frame,
    frames_of,
    noise_pcm,
    percentile,
    process_cpu_seconds,
    realtime_priority,
    set_niceness,
)
from _speech import FRAME_S, build_scripts, offset_frames
from _webrtc import OpusTrack, Peer, opus_packets, use_loopback

LATE_S = 0.040
PHASES = 10  # WebSocket sessions are spread over 10 phases of the 20 ms period (one every 2 ms)
PROBE_TEXT = "What are your opening hours?"


class Session:
    """One call's bookkeeping: agent-audio lateness (probes; every WebRTC session), replies, events.

    Agent audio is judged on a 20 ms clock anchored at its first frame: a frame more than ``LATE_S``
    after its slot is late, and the clock re-anchors there (one stall counts once)."""

    def __init__(self, role: str, phase: int) -> None:
        self.role = role
        self.phase = phase
        self.ready = asyncio.Event()
        # lateness of agent audio
        self.anchor: float | None = None
        self.index = 0
        self.audio_frames = 0
        self.late_frames = 0
        self.max_lateness = 0.0
        self.replies = 0
        self.user_speech = 0
        self.measuring = False
        # callers who talk (--speech)
        self.script = -1
        self.loop_t0 = math.nan
        self.transcripts: list[tuple[float, str]] = []
        self.stt_ms: list[tuple[float, float]] = []
        """(arrival, the server's turn-end decision -> final transcript) of each answered turn."""

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    @property
    def close_code(self) -> int | None:
        return None

    def send(self, type_: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def judge(self, t: float) -> None:
        if self.anchor is None:
            self.anchor, self.index = t, 0
        else:
            self.index += 1
            lateness = t - (self.anchor + self.index * 0.02)
            if self.measuring:
                self.max_lateness = max(self.max_lateness, lateness)
            if lateness > LATE_S:
                if self.measuring:
                    self.late_frames += 1
                self.anchor, self.index = t, 0
        if self.measuring:
            self.audio_frames += 1

    def on_message(self, t: float, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "bot-ready":
            self.ready.set()
        elif kind == "bot-started-speaking":
            self.restart_judge()
        elif kind == "bot-stopped-speaking" and self.role == "probe":
            self.replies += 1
            asyncio.get_running_loop().call_later(0.3, self.ask)
        elif kind == "user-started-speaking":
            self.user_speech += 1
        elif kind == "user-transcription" and msg["data"].get("final"):
            self.transcripts.append((t, str(msg["data"].get("text", ""))))
        elif kind == "metrics" and self.role == "talker":
            turn = msg["data"].get("turn") or {}
            if turn.get("stt_ms") is not None:
                self.stt_ms.append((t, float(turn["stt_ms"])))

    def restart_judge(self) -> None:
        self.anchor = None

    def ask(self) -> None:
        if not self.closed:
            self.send("send-text", {"content": PROBE_TEXT})


class WSSession(Session):
    """Over the RTVI WebSocket; its frames are sent by the worker's ticker."""

    def __init__(
        self, url: str, role: str, phase: int, frames: list[bytes] | None = None, offset: int = 0
    ) -> None:
        super().__init__(role, phase)
        self.url = url
        self.ws: WSClient | None = None
        self.n = 0
        self.frames = frames
        """This session's own microphone (a talker's script), else the worker's shared noise."""
        self.offset = offset

    @property
    def closed(self) -> bool:
        return self.ws is not None and self.ws.closed.is_set()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code if self.ws is not None else None

    def send(self, type_: str, data: dict[str, Any]) -> None:
        if self.ws is not None:
            self.ws.send(type_, data)

    def on_audio(self, t: float, payload: bytes) -> None:
        if self.role in ("probe", "talker"):
            self.judge(t)

    async def connect(self) -> None:
        self.ws = await WSClient.connect(self.url, self.on_audio, self.on_message)
        self.ws.send("client-ready", {"version": "1.0.0", "audio": {"output_sample_rate": 16000}})
        await asyncio.wait_for(self.ready.wait(), 30)

    async def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


class RTCSession(Session):
    """An aiortc peer: its own paced Opus microphone, agent audio judged at RTP arrival."""

    def __init__(self, call: dict[str, Any], role: str, phase: int, packets: list[bytes]) -> None:
        super().__init__(role, phase)
        self.track = OpusTrack(packets, offset=phase * 5)
        self.track.lateness = None  # recorded during windows only
        self.peer = Peer(
            str(call["webrtc_offer_url"]), str(call["token"]), track=self.track, on_rtp=self.on_rtp,
            on_message=self.on_message, ice_servers=call.get("ice_servers") or [],
        )  # fmt: skip
        self.sent0 = 0

    @property
    def closed(self) -> bool:
        return self.peer.closed

    def send(self, type_: str, data: dict[str, Any]) -> None:
        if self.peer.channel.readyState == "open":
            self.peer.send(type_, data)

    def on_rtp(self, t: float, packet: RtpPacket) -> None:
        self.judge(t)

    def restart_judge(self) -> None:
        pass  # a continuous stream: silence between replies is paced like speech

    async def connect(self) -> None:
        await self.peer.join()

    async def close(self) -> None:
        await self.peer.close()


class Worker:
    """One load-generator process: many sessions of one transport."""

    def __init__(self, conn: Connection, index: int, transport: str, speech: bool = False) -> None:
        self.conn = conn
        self.index = index
        self.transport = transport
        self.sessions: list[Session] = []
        self.groups: list[list[WSSession]] = [[] for _ in range(PHASES)]
        noise = noise_pcm(1.0, seed=100 + index)
        self.frames = [binary_frame(f) for f in frames_of(noise)]
        self.packets = opus_packets(noise) if transport == "webrtc" else []
        self.scripts = (
            [[binary_frame(f) for f in frames_of(sc.pcm)] for sc in build_scripts()] if speech else []
        )
        self.talkers = 0
        self.lateness: list[float] = []
        self.frames_sent = 0
        self.connect_failures: list[str] = []
        self._next_phase = index % PHASES
        self._cpu0 = self._t0 = 0.0
        self._live0 = 0

    async def run(self) -> None:
        ticker = asyncio.create_task(self.tick()) if self.transport == "websocket" else None
        loop = asyncio.get_running_loop()
        try:
            while True:
                cmd, arg = await loop.run_in_executor(None, self.conn.recv)
                if cmd == "connect":
                    await self.connect(arg)
                    self.conn.send(("connected", self.live(), list(self.connect_failures)))
                elif cmd == "window-start":
                    self.window_start()
                    self.conn.send(("ok", None))
                elif cmd == "window-end":
                    self.conn.send(("stats", self.window_end()))
                elif cmd == "speech":
                    self.conn.send(("speech", self.speech()))
                elif cmd == "stop":
                    await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)
                    await asyncio.sleep(0.5)
                    self.conn.send(("stopped", None))
                    return
        finally:
            if ticker is not None:
                ticker.cancel()

    def live(self) -> int:
        return sum(1 for s in self.sessions if not s.closed)

    async def connect(self, items: list[tuple[dict[str, Any], str]]) -> None:
        gate = asyncio.Semaphore(10)

        async def one(call: dict[str, Any], role: str) -> None:
            async with gate:
                phase = self._next_phase
                self._next_phase = (self._next_phase + 3) % PHASES  # 3 is coprime with 10: spreads evenly
                session: WSSession | RTCSession
                if self.transport == "webrtc":
                    session = RTCSession(call, role, phase, self.packets)
                elif role == "talker":
                    script = (self.index + self.talkers) % len(self.scripts)
                    frames = self.scripts[script]
                    offset = offset_frames(self.index * 1000 + self.talkers, len(frames) * FRAME_S)
                    self.talkers += 1
                    session = WSSession(str(call["websocket_url"]), role, phase, frames, offset)
                    session.script = script
                else:
                    session = WSSession(str(call["websocket_url"]), role, phase)
                try:
                    await session.connect()
                except Exception as exc:  # any failure to join is counted and reported, not fatal
                    code = session.close_code
                    self.connect_failures.append(f"{type(exc).__name__}: {exc} (close {code})")
                    await session.close()
                    return
                self.sessions.append(session)
                if isinstance(session, WSSession):
                    self.groups[session.phase].append(session)

        await asyncio.gather(*(one(call, role) for call, role in items))

    async def tick(self) -> None:
        """Every 2 ms, send the next frame of every WebSocket session in that phase: each session gets
        one frame per 20 ms on an absolute schedule (no drift); lateness of each tick is recorded."""
        start = time.monotonic()
        k = 0
        frames = self.frames
        nframes = len(frames)
        while True:
            due = start + k * 0.002
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            group = self.groups[k % PHASES]
            if group:
                self.lateness.append(time.monotonic() - due)
                for s in group:
                    ws = s.ws
                    if ws is not None and ws.transport is not None and not ws.transport.is_closing():
                        own = s.frames
                        if own is None:
                            ws.transport.write(frames[s.n % nframes])
                        else:
                            if s.n == 0:  # the script's sample 0 was (or would have been) sent then
                                s.loop_t0 = due - s.offset * FRAME_S
                            ws.transport.write(own[(s.offset + s.n) % len(own)])
                        s.n += 1
                        self.frames_sent += 1
            k += 1

    def window_start(self) -> None:
        self.lateness.clear()
        self.frames_sent = 0
        self._cpu0 = process_cpu_seconds(os.getpid())
        self._t0 = time.monotonic()
        self._live0 = self.live()
        for s in self.sessions:
            s.measuring = True
            s.audio_frames = s.late_frames = s.replies = 0
            s.max_lateness = 0.0
            if isinstance(s, RTCSession):
                s.track.lateness = []
                s.sent0 = s.track.sent

    def window_end(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        for s in self.sessions:
            s.measuring = False
            if isinstance(s, RTCSession):
                self.lateness += s.track.lateness or []
                self.frames_sent += s.track.sent - s.sent0
                s.track.lateness = None
        judged = [s for s in self.sessions if s.role == "probe" or isinstance(s, RTCSession)]
        lateness = sorted(self.lateness)
        closed = [s for s in self.sessions if s.closed]
        return {
            "wall_s": wall,
            "cpu_s": process_cpu_seconds(os.getpid()) - self._cpu0,
            "sessions": len(self.sessions),
            "live": self.live(),
            "closed": len(closed),
            "close_codes": dict(collections.Counter(str(s.close_code) for s in closed)),
            "frames_sent": self.frames_sent,
            "frames_expected": sum(wall / 0.02 for s in self.sessions if s not in closed),
            "send_lateness_p50_ms": 1000 * percentile(lateness, 50),
            "send_lateness_p99_ms": 1000 * percentile(lateness, 99),
            "send_lateness_max_ms": 1000 * (lateness[-1] if lateness else math.nan),
            "judged_frames": sum(s.audio_frames for s in judged),
            "judged_late": sum(s.late_frames for s in judged),
            "judged_max_lateness_ms": 1000 * max((s.max_lateness for s in judged), default=0.0),
            "probe_replies": sum(s.replies for s in self.sessions if s.role == "probe"),
            "user_speech_events": sum(s.user_speech for s in self.sessions),
            "connect_failures": list(self.connect_failures),
        }

    def speech(self) -> dict[str, Any]:
        """Every talker's record so far (scored by the orchestrator, see ``_speech.score``)."""
        talkers = [s for s in self.sessions if s.role == "talker"]
        return {
            "heard": [
                {"script": s.script, "loop_t0": s.loop_t0, "transcripts": s.transcripts} for s in talkers
            ],
            "stt_ms": [x for s in talkers for x in s.stt_ms],
        }


def worker_main(
    conn: Connection, index: int, transport: str, nice: int, rt: bool, speech: bool = False
) -> None:
    if nice:
        set_niceness(nice)
    if rt:
        realtime_priority()
    if transport == "webrtc":
        use_loopback()
    worker = Worker(conn, index, transport, speech)
    try:
        import uvloop
    except ImportError:
        asyncio.run(worker.run())
        return
    uvloop.run(worker.run())
