"""The load-generator processes of ``bench/sessions.py``: many real-time sessions per process.

The orchestrator (``sessions.py``) starts ``--clients`` of these with :func:`worker_main` and drives them
over a pipe: ``connect`` a batch of calls, ``window-start``/``window-end`` around a measurement window
(answered with the window's figures), ``stop``.

* WebSocket sessions use the hand-rolled :class:`~_server.WSClient`; one ticker sends every session's
  pre-built frame, the sessions spread over 10 phases of the 20 ms period.
* ``--speech``: every WebSocket session is a caller who talks (``_speech.py``): it loops a script of
  real speech from its own offset, and keeps its final transcripts and the server's per-turn STT time
  (RTVI ``metrics``) for the orchestrator to score.
* WebRTC sessions are aiortc peers (``_webrtc.py``) for ICE, DTLS and the data channel; their microphone
  is pre-encoded Opus sent as SRTP by the same ticker (:class:`~_webrtc.RtpMic`, no aiortc RTP sender,
  no encoder per peer). Agent audio is timestamped at RTP arrival and never decoded, and judged by its
  RTP timestamps: the server sends nothing but a DTX packet every 400 ms while an agent is silent, so
  only speech is judged (the probes' replies, as over WebSocket).
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
from _webrtc import OPUS_RATE, HeldTrack, Peer, RtpMic, opus_packets, use_loopback

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
    """An aiortc peer whose microphone is an :class:`RtpMic` sent by the worker's ticker; agent audio is
    judged at RTP arrival against its RTP timestamps."""

    def __init__(self, call: dict[str, Any], role: str, phase: int, packets: list[bytes]) -> None:
        super().__init__(role, phase)
        self.mic = RtpMic(packets, offset=phase * 5)
        self.peer = Peer(
            str(call["webrtc_offer_url"]), str(call["token"]), track=HeldTrack(), on_rtp=self.on_rtp,
            on_message=self.on_message, ice_servers=call.get("ice_servers") or [],
        )  # fmt: skip
        self._base: float | None = None  # arrival minus RTP time of the earliest packet of the talkspurt
        self._ts: int | None = None
        self._rtp_s = 0.0  # RTP time, unwrapped

    @property
    def closed(self) -> bool:
        return self.peer.closed

    def send(self, type_: str, data: dict[str, Any]) -> None:
        if self.peer.channel.readyState == "open":
            self.peer.send(type_, data)

    def on_rtp(self, t: float, packet: RtpPacket) -> None:
        """A packet more than ``LATE_S`` behind the earliest one of its talkspurt (arrival against RTP
        time) is late; the reference moves there (one stall counts once). DTX packets (1-2 bytes) are
        not audio; a talkspurt starts with the marker bit (its own timing is the server's to choose)."""
        if self._ts is not None:
            self._rtp_s += ((packet.timestamp - self._ts + (1 << 31)) % (1 << 32) - (1 << 31)) / OPUS_RATE
        self._ts = packet.timestamp
        if len(packet.payload) <= 2:
            return
        offset = t - self._rtp_s
        if packet.marker or self._base is None or offset < self._base:
            self._base = offset
        lateness = offset - self._base
        if self.measuring:
            self.audio_frames += 1
            self.max_lateness = max(self.max_lateness, lateness)
        if lateness > LATE_S:
            if self.measuring:
                self.late_frames += 1
            self._base = offset

    def restart_judge(self) -> None:
        pass  # talkspurts are told apart by their marker bit

    async def connect(self) -> None:
        await self.peer.join()
        self.mic.attach(self.peer.pc)

    async def close(self) -> None:
        await self.peer.close()


class Worker:
    """One load-generator process: many sessions of one transport."""

    def __init__(self, conn: Connection, index: int, transport: str, speech: bool = False) -> None:
        self.conn = conn
        self.index = index
        self.transport = transport
        self.sessions: list[Session] = []
        self.groups: list[list[Session]] = [[] for _ in range(PHASES)]
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
        ticker = asyncio.create_task(self.tick())
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
                self.groups[session.phase].append(session)

        await asyncio.gather(*(one(call, role) for call, role in items))

    async def tick(self) -> None:
        """Every 2 ms, send the next frame of every session in that phase (WebSocket: a binary frame;
        WebRTC: an SRTP packet): each session gets one frame per 20 ms on an absolute schedule (no
        drift); lateness of each tick is recorded."""
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
                    if isinstance(s, WSSession):
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
                    elif isinstance(s, RTCSession) and s.mic.attached and not s.closed:
                        s.mic.send()
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

    def window_end(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        for s in self.sessions:
            s.measuring = False
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
