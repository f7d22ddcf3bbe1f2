"""One live call: a transport, a pipeline, and the call's lifecycle in the store.

The transport's receive loop feeds the session (:meth:`push_audio`, :meth:`handle_message`); the session
owns the pipeline and every task it starts; :meth:`run` returns when the call is over, having persisted
the end state, the collected data and the recording, and closed the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from callgate.clock import Clock
from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan, CallRecords
from callgate.domain.recordings import Recordings
from callgate.domain.tools import HttpTools
from callgate.errors import CallgateError
from callgate.log import call_id_var
from callgate.metrics import Metrics
from callgate.pipeline import frames as f
from callgate.pipeline.interfaces import STT, TTS, VAD, AgentEngine, EndOfTurnModel
from callgate.pipeline.options import MODES, Mode, PipelineOptions
from callgate.pipeline.pipeline import ConversationPipeline
from callgate.pipeline.recording import Recorder
from callgate.pipeline.tools import ToolRecord
from callgate.providers.fallback import Switch, SwitchLog
from callgate.realtime import rtvi
from callgate.realtime.control import CallControl
from callgate.realtime.digits import KEYS, MAX_KEYS, DigitCollector
from callgate.realtime.tools import CallTools

log = logging.getLogger(__name__)

WATCHDOG_S = 0.25
GOODBYE_MAX_S = 30.0
"""The silence timeout's goodbye ends the call after it is said; if it has not by then, the call ends."""
MAX_EARLY_TEXTS = 8
NO_TTS = "this call cannot speak: no text-to-speech engine is installed"


class SessionState(enum.Enum):
    STARTING = "starting"
    ACTIVE = "active"
    ENDING = "ending"
    ENDED = "ended"


class CallTransport(Protocol):
    """What a session needs from a transport: send audio and messages, close with a code."""

    async def send_audio(self, pcm16: bytes) -> None: ...

    async def send_message(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@runtime_checkable
class ConfirmsPlayout(Protocol):
    """A transport whose far end confirms what it has played (Twilio's marks). The pipeline estimates
    what the caller heard of an interrupted reply from the audio it *sent*; audio still buffered at
    the far end was not heard, so such a transport cuts the estimate back to what was confirmed."""

    def heard(self, estimate: str) -> str: ...


class CallerMediaStats(Protocol):
    """What a transport that receives RTP counts of the caller's stream (its jitter buffer's stats)."""

    packets: int
    lost_packets: int
    concealed_ms: float
    paused_ms: float


@runtime_checkable
class ReportsCallerMedia(Protocol):
    """A transport whose caller audio comes as RTP (WebRTC, SIP): the session exports its counts,
    labelled with ``media_transport`` (``webrtc``, ``sip_ws``, ``sip_trunk``)."""

    media_transport: str

    def caller_media(self) -> CallerMediaStats | None: ...


@dataclass(frozen=True, slots=True)
class Engines:
    vad: VAD
    stt: STT
    tts: TTS | None
    agent: AgentEngine
    switches: SwitchLog | None = None
    """Where the call's stages record moving to a fallback engine (``providers/fallback.py``)."""
    end_of_turn: EndOfTurnModel | None = None
    """Semantic turn detection's model; None: silence only."""


@dataclass(frozen=True, slots=True)
class SessionServices:
    """What a running session uses of its node, and nothing more."""

    clock: Clock
    metrics: Metrics
    control: CallControl
    records: CallRecords
    recordings: Recordings
    """Spools each call's recording on this node, then keeps it where every node can serve it."""
    http_tools: HttpTools | None = None
    """Runs agents' ``http`` tools (signed, through the outbound guard); None: they answer an error."""


class CallSession:
    """See the module docstring. Made by :meth:`callgate.realtime.start.CallStarter.start`; then
    ``await run()``; end it with :meth:`end`."""

    def __init__(
        self,
        *,
        services: SessionServices,
        plan: CallPlan,
        transport: CallTransport,
        engines: Engines,
        options: PipelineOptions,
    ) -> None:
        self.services = services
        self.plan = plan
        self.call_id = plan.call_id
        self.transport = transport
        self.state = SessionState.STARTING
        self.end_reason: EndReason | None = None
        self._ended = asyncio.Event()
        self._data = dict(plan.data)
        self._speaks = engines.tts is not None
        self._turn_writes: list[asyncio.Task[None]] = []
        self._early_texts: list[str] = []
        """Text the caller sent between ``bot-ready`` and the pipeline's start: handed over at start."""
        self._partials_wanted = False
        self._partial_text: str | None = None
        """The newest interim transcript not yet written (older ones are replaced, not queued)."""
        self._partial_queued: str | None = None
        self._partial_writer: asyncio.Task[None] | None = None
        self._agent = engines.agent
        self.tools = CallTools(
            plan=plan,
            clock=services.clock,
            transport=transport,
            send=transport.send_message,
            record=self._record_tool,
            http=services.http_tools,
        )
        """Runs the agent's tools that need the outside world (``realtime/tools.py``)."""
        engines.agent.bind(self.tools)
        self.keys = DigitCollector(self._typed, clock=services.clock)
        """The call's key presses (RTVI ``dtmf``, RFC 4733, SIP INFO), gathered into one typed turn."""
        self.recording_path: Path = services.recordings.spool_path(plan.call_id)
        self.recording_path.parent.mkdir(parents=True, exist_ok=True)
        self.recorder = Recorder(self.recording_path)
        self.pipeline = ConversationPipeline(
            vad=engines.vad,
            stt=engines.stt,
            agent=engines.agent,
            tts=engines.tts,
            output=self,
            clock=services.clock,
            options=options,
            recorder=self.recorder,
            end_of_turn=engines.end_of_turn,
        )
        self._started_at = services.clock.monotonic()
        self._last_text_at = self._started_at
        self._goodbye_at: float | None = None
        """When the silence timeout had the agent say goodbye (the call ends after it)."""
        if engines.switches is not None:
            engines.switches.subscribe(self._on_switch)
        self._exported = {
            "frames_sent": 0.0,
            "late_frames": 0.0,
            "input_dropped_ms": 0.0,
            "interruptions": 0.0,
            "turns_taken_back": 0.0,
            "reminders": 0.0,
        }
        self._media_exported = (0, 0, 0.0, 0.0)
        self._media = transport if isinstance(transport, ReportsCallerMedia) else None
        """The transport, if it counts the caller's RTP stream (checked once: the watchdog exports often)."""

    # ---------------------------------------------------------------- lifecycle

    def _set_state(self, state: SessionState) -> None:
        if state is not self.state:
            log.info("session %s -> %s", self.state.value, state.value, extra={"call": self.call_id})
            self.state = state

    def end(self, reason: EndReason) -> None:
        """Ask the session to end (idempotent: the first reason wins)."""
        if self.end_reason is None:
            self.end_reason = reason
        self._ended.set()

    async def _end_from_control(self, reason: EndReason) -> None:
        self.end(reason)

    async def run(self) -> EndReason:
        token = call_id_var.set(self.call_id)
        unregister = self.services.control.register(self.call_id, self._end_from_control)
        self.services.metrics.live_sessions.inc()
        try:
            await self._mark_in_progress()
            await self.pipeline.start()
            self._set_state(SessionState.ACTIVE)
            for text in self._early_texts:
                self.pipeline.push_text(text)
            self._early_texts.clear()
            await self._watch()
        except CallgateError as exc:
            log.warning("session failed: %s", exc.detail)
            self.end(EndReason.SERVER_ERROR)
        except Exception:
            log.exception("session crashed")
            self.end(EndReason.SERVER_ERROR)
        finally:
            try:
                await self._finish()
            finally:
                # Counted live until its end is stored and its caller told: a draining node waits for it.
                unregister()
                self.services.metrics.live_sessions.dec()
                call_id_var.reset(token)
        assert self.end_reason is not None
        return self.end_reason

    async def _mark_in_progress(self) -> None:
        self._partials_wanted = await self.services.records.mark_in_progress(
            team_id=self.plan.team_id, call_id=self.call_id
        )

    async def _watch(self) -> None:
        """Wait for an end; meanwhile enforce max duration and the silence timeout."""
        agent, clock = self.plan.agent, self.services.clock
        while not self._ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), WATCHDOG_S)
            self._export_metrics()
            if self.pipeline.failure is not None:
                log.error("the pipeline failed: %r", self.pipeline.failure)
                self.end(EndReason.SERVER_ERROR)
                break
            now = clock.monotonic()
            if now - self._started_at >= agent.max_duration_s:
                self.end(EndReason.MAX_DURATION)
            elif self._goodbye_at is not None:
                if not self.pipeline.saying_goodbye:  # the caller talked over it: the call goes on
                    self._goodbye_at = None
                elif now - self._goodbye_at >= GOODBYE_MAX_S:  # the goodbye did not end the call
                    self.end(EndReason.SILENCE_TIMEOUT)
            elif (
                now - max(self.pipeline.last_activity, self._last_text_at) >= agent.silence_timeout_s
                and not self.pipeline.agent_speaking
            ):
                if await self.pipeline.say_goodbye():  # the call ends after it (CallEndRequested)
                    self._goodbye_at = now
                else:
                    self.end(EndReason.SILENCE_TIMEOUT)

    def _export_metrics(self) -> None:
        """Add this pipeline's counters since the last export to the node's Prometheus metrics."""
        snap, m = self.pipeline.metrics.snapshot(), self.services.metrics
        deltas = {name: snap[name] - seen for name, seen in self._exported.items()}
        self._exported = {name: snap[name] for name in self._exported}
        m.output_frames.inc(deltas["frames_sent"])
        m.late_output_frames.inc(deltas["late_frames"])
        m.input_dropped_seconds.inc(deltas["input_dropped_ms"] / 1000)
        m.interruptions.inc(deltas["interruptions"])
        m.turns_taken_back.inc(deltas["turns_taken_back"])
        m.reminders.inc(deltas["reminders"])
        source = self._media
        media = source.caller_media() if source is not None else None
        if source is not None and media is not None:
            was, self._media_exported = self._media_exported, (
                media.packets, media.lost_packets, media.concealed_ms, media.paused_ms
            )  # fmt: skip
            kind = source.media_transport
            m.caller_rtp_packets.labels(kind).inc(media.packets - was[0])
            m.caller_rtp_lost.labels(kind).inc(media.lost_packets - was[1])
            m.caller_concealed_seconds.labels(kind).inc((media.concealed_ms - was[2]) / 1000)
            m.caller_paused_seconds.labels(kind).inc((media.paused_ms - was[3]) / 1000)

    async def _finish(self) -> None:
        self._set_state(SessionState.ENDING)
        reason = self.end_reason or EndReason.SERVER_ERROR
        await self.keys.aclose()
        self.tools.close()
        await self.pipeline.stop()
        try:
            await self._agent.aclose()
        except Exception:
            log.exception("the agent did not close cleanly")
        self._export_metrics()
        self.services.metrics.session_max_output_lag.observe(self.pipeline.metrics.max_output_lag_ms / 1000)
        for task in [*self._turn_writes, self._partial_writer]:
            if task is not None:
                with contextlib.suppress(Exception):
                    await task
        self.recorder.close()
        await self._persist_end(reason)
        await self._keep_recording()
        self.services.metrics.calls_ended.labels(reason=reason.value).inc()
        with contextlib.suppress(Exception):
            await self.transport.send_message(
                rtvi.message("server-message", {"type": "call-ended", "reason": reason})
            )
        code = 1011 if reason is EndReason.SERVER_ERROR else 1000
        with contextlib.suppress(Exception):
            await self.transport.close(code, f"call ended: {reason.value}")
        self._set_state(SessionState.ENDED)

    async def _persist_end(self, reason: EndReason) -> None:
        try:
            await self.services.records.finish(
                team_id=self.plan.team_id,
                call_id=self.call_id,
                reason=reason,
                data=self._data,
                recording_path=None,  # attached by _keep_recording once it is kept
            )
        except CallgateError:
            log.exception("could not persist the end of the call")

    async def _keep_recording(self) -> None:
        """After the end is stored (so an upload is not billed as call time), before the caller is
        told: the recording goes to the node's store and is attached to the call."""
        if self.recorder.frames_written:
            await self.services.recordings.keep(
                team_id=self.plan.team_id, call_id=self.call_id, local=self.recording_path
            )

    # ---------------------------------------------------------------- input from the transport

    def push_audio(self, pcm16: bytes) -> None:
        if self.state is SessionState.ACTIVE:
            self.pipeline.push_audio(pcm16)

    async def handle_message(self, msg: rtvi.ClientMessage) -> None:
        """A client message after the handshake. Raises :class:`rtvi.ProtocolError` on bad input."""
        if msg.type == "send-text":
            content = msg.data.get("content")
            if not isinstance(content, str) or not content.strip():
                raise rtvi.ProtocolError("send-text needs a non-empty `content` string")
            self._last_text_at = self.services.clock.monotonic()
            if self.state is SessionState.ACTIVE:
                self.pipeline.push_text(content.strip())
            elif self.state is SessionState.STARTING and len(self._early_texts) < MAX_EARLY_TEXTS:
                self._early_texts.append(content.strip())
        elif msg.type == "disconnect-bot":
            self.end(EndReason.CALLER_HANGUP)
        elif msg.type == "client-message":
            await self._client_message(msg)
        elif msg.type == "llm-function-call-result":
            refusal = self.tools.client_result(msg.data)
            if refusal is not None:
                await self.send_error(refusal, fatal=False)
        elif msg.type == "client-ready":
            raise rtvi.ProtocolError("client-ready was already received")
        else:
            await self.send_error(f"unknown message type {msg.type!r}", fatal=False)

    async def _client_message(self, msg: rtvi.ClientMessage) -> None:
        kind, body = msg.data.get("t"), msg.data.get("d") or {}
        if kind == "set-mode" and isinstance(body, dict) and body.get("mode") == "audio" and not self._speaks:
            await self.send_error(
                "this call cannot speak: no text-to-speech engine is installed", fatal=False
            )
        elif kind == "set-mode" and isinstance(body, dict) and body.get("mode") in MODES:
            mode: Mode = body["mode"]
            self.pipeline.set_mode(mode)
            await self.transport.send_message(
                rtvi.message("server-response", {"t": "set-mode", "d": {"mode": mode}}, id_=msg.id)
            )
        elif kind == "dtmf" and isinstance(body, dict) and _valid_keys(body.get("digits")):
            for key in body["digits"].upper():
                self.keys.press(key)
            await self.transport.send_message(
                rtvi.message("server-response", {"t": "dtmf", "d": {"digits": body["digits"]}}, id_=msg.id)
            )
        elif kind == "mute" and isinstance(body, dict) and isinstance(body.get("muted"), bool):
            # The client sends silence while muted; the server only acknowledges.
            await self.transport.send_message(
                rtvi.message("server-response", {"t": "mute", "d": {"muted": body["muted"]}}, id_=msg.id)
            )
        else:
            await self.send_error(f"unsupported client-message {kind!r}", fatal=False)

    def press_key(self, key: str) -> None:
        """A caller key press from the transport (RFC 4733, SIP INFO): gathered into one typed turn."""
        self.keys.press(key)

    async def _typed(self, text: str) -> None:
        await self.handle_message(rtvi.ClientMessage("send-text", None, {"content": text}))

    async def send_error(self, text: str, *, fatal: bool) -> None:
        await self.transport.send_message(rtvi.message("error", {"message": text, "fatal": fatal}))

    # ---------------------------------------------------------------- PipelineOutput

    async def send_audio(self, pcm16: bytes) -> None:
        await self.transport.send_audio(pcm16)

    async def send_event(self, event: f.PipelineEvent) -> None:
        match event:
            case f.TurnEnded(record=record):
                if (
                    record.role == "agent"
                    and record.interrupted
                    and isinstance(self.transport, ConfirmsPlayout)
                ):
                    record = dataclasses.replace(record, text=self.transport.heard(record.text))
                # Nothing of the reply was heard: no agent turn, unless it records why the agent stopped.
                if record.text or record.barge_ins:
                    self._turn_writes.append(asyncio.create_task(self._save_turn(record)))
                self._turn_writes = [t for t in self._turn_writes if not t.done()]
            case f.UserTranscription(text=interim, final=False) if self._partials_wanted:
                self._queue_partial(interim.strip())
            case f.AgentDataCollected(data=data):
                self._data.update(data)
            case f.CallEndRequested():
                self.end(EndReason.SILENCE_TIMEOUT if self._goodbye_at is not None else EndReason.AGENT_ENDED)
            case f.TransferRequested(target=target):
                self._data["transfer_target"] = target
                self.end(EndReason.TRANSFERRED)
        for text in rtvi.from_event(event):
            await self.transport.send_message(text)

    def _queue_partial(self, text: str) -> None:
        """Write interim transcripts one at a time; while a write is under way, newer ones replace the
        one waiting (a slow database gets the newest text, not a backlog)."""
        if not text or text == self._partial_queued:
            return
        self._partial_queued = self._partial_text = text
        if self._partial_writer is None or self._partial_writer.done():
            self._partial_writer = asyncio.create_task(self._write_partials(), name="transcript-partial")

    async def _write_partials(self) -> None:
        while self._partial_text is not None:
            text = self._partial_text
            self._partial_text = None
            try:
                await self.services.records.record_partial(
                    team_id=self.plan.team_id, call_id=self.call_id, text=text
                )
            except CallgateError:
                log.warning("could not record an interim transcript")

    def _record_tool(self, record: ToolRecord) -> None:
        fields = {
            "role": "tool",
            "text": record.name,
            "interrupted": record.interrupted,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "tool": record.entry(),
        }
        if self.state is not SessionState.ENDED:
            self._turn_writes.append(asyncio.create_task(self._write_turn(fields), name="tool-record"))

    async def _write_turn(self, fields: dict[str, object]) -> None:
        try:
            await self.services.records.save_turn(call_id=self.call_id, fields=fields)
        except CallgateError:
            log.exception("could not save a tool call")

    def _on_switch(self, switch: Switch) -> None:
        """A stage moved to a fallback engine: record it on the call (and its webhook)."""
        data = {
            "role": switch.role,
            "from": switch.from_engine,
            "to": switch.to_engine,
            "reason": switch.reason,
            "at_start": switch.at_start,
        }
        self._turn_writes.append(asyncio.create_task(self._record_switch(data), name="provider-switch"))

    async def _record_switch(self, data: dict[str, Any]) -> None:
        try:
            await self.services.records.provider_switched(
                team_id=self.plan.team_id, call_id=self.call_id, data=data
            )
        except CallgateError:
            log.exception("could not record a provider switch")

    async def _save_turn(self, record: f.TurnRecord) -> None:
        lat = record.latency
        fields = {
            "role": record.role,
            "text": record.text,
            "interrupted": record.interrupted,
            "barge_ins": [b.as_dict() for b in record.barge_ins] or None,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            **{
                name: (round(value) if value is not None else None)
                for name, value in (lat.as_dict() if lat else {}).items()
            },
        }
        try:
            await self.services.records.save_turn(call_id=self.call_id, fields=fields)
        except CallgateError:
            log.exception("could not save a transcript turn")


def _valid_keys(digits: object) -> bool:
    return isinstance(digits, str) and 0 < len(digits) <= MAX_KEYS and set(digits.upper()) <= KEYS
