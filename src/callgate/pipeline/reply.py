"""One agent reply: agent events -> sentences -> TTS -> paced playout, as three tasks it owns.

:meth:`Reply.run` runs the stages in a task group; cancelling the task that runs it (barge-in) cancels the
agent stream, the synthesis and the playout together, and nothing more is sent. The owner then calls
:meth:`Reply.finish_interrupted` to tell the client and the agent what was actually heard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from callgate.clock import Clock
from callgate.pipeline.audio import Framer, StreamResampler
from callgate.pipeline.frames import (
    AgentDataCollected,
    AgentTextFrame,
    BargeIn,
    BotInterrupted,
    BotLLMText,
    BotStoppedSpeaking,
    CallEndRequested,
    EndFrame,
    Metrics,
    TransferRequested,
    TTSAudio,
    TTSStarted,
    TTSStopped,
    TurnEnded,
    TurnLatency,
    TurnRecord,
)
from callgate.pipeline.interfaces import (
    TTS,
    AgentData,
    AgentEndCall,
    AgentEngine,
    AgentEvent,
    AgentText,
    AgentTransfer,
)
from callgate.pipeline.options import PipelineMetrics, PipelineOptions, PipelineOutput
from callgate.pipeline.playout import FrameHook, Player
from callgate.pipeline.sentences import SentenceSplitter
from callgate.pipeline.spoken import SpokenTracker

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UserTurnTiming:
    """Monotonic times of the caller turn a reply answers; None for a typed message."""

    last_speech_at: float | None = None
    decided_at: float | None = None
    transcript_at: float = 0.0


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000.0, 3)


class Reply:
    def __init__(
        self,
        *,
        source: AsyncIterator[AgentEvent],
        agent: AgentEngine | None,
        tts: TTS | None,
        speak: Callable[[], bool],
        output: PipelineOutput,
        clock: Clock,
        options: PipelineOptions,
        metrics: PipelineMetrics,
        timing: UserTurnTiming,
        on_frame: FrameHook | None = None,
    ) -> None:
        self._source = source
        self._agent = agent
        self._tts = tts
        self._speak = speak
        self._output = output
        self._clock = clock
        self._opts = options
        self._metrics = metrics
        self._timing = timing
        self.tracker = SpokenTracker(sample_rate=options.output_sample_rate)
        self.player = Player(
            output=output, clock=clock, options=options, tracker=self.tracker, metrics=metrics,
            speak=speak, on_frame=on_frame,
        )  # fmt: skip
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self._started_at = clock.now()
        self._first_text_at: float | None = None
        self._first_tts_request_at: float | None = None
        self._first_tts_audio_at: float | None = None
        self._final_action: AgentEndCall | AgentTransfer | None = None
        self._producer: asyncio.Task[None] | None = None
        self.failed = False
        """A provider failed mid-reply; what was already produced was still played."""
        self.interruptible = True
        """False once the agent decided to end or transfer the call, or once playout has finished."""
        self.interrupted = False
        """The caller cut it off (:meth:`finish_interrupted`)."""
        self.finished = False
        self.barge_ins: list[BargeIn] = []
        """The caller's sounds over this reply and what they did (see :class:`BargeIn`)."""

    @property
    def ends_call(self) -> bool:
        """The agent ended or transferred the call in this reply; it will not answer again (unless the
        caller talked over an interruptible goodbye)."""
        return self._final_action is not None and not self.interrupted

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._producer = group.create_task(self._produce(), name="reply-agent")
                group.create_task(self._synthesize(), name="reply-tts")
                group.create_task(self.player.run(), name="reply-playout")
        except* Exception as errors:  # playout failed (the output is gone): nothing more can be said
            for error in errors.exceptions:
                self._fail("playout", error)
        self.interruptible = False
        self.finished = True
        if self.player.speaking:
            await self._output.send_event(BotStoppedSpeaking())
        # After a failure only what was played counts; the rest was never heard.
        text = self.tracker.spoken_text() if self.failed else self.tracker.full_text
        await self._report(text, interrupted=False)
        action = self._final_action
        if isinstance(action, AgentEndCall):
            await self._output.send_event(CallEndRequested(action.reason))
        elif isinstance(action, AgentTransfer):
            await self._output.send_event(TransferRequested(action.target))

    async def finish_interrupted(self, *, notify_client: bool = True) -> str:
        """After the task running :meth:`run` was cancelled: report the truncated turn. Returns the
        text the caller heard."""
        self.finished = self.interrupted = True
        spoken = self.tracker.spoken_text()
        if notify_client:
            await self._output.send_event(BotInterrupted())
            if self.player.speaking:
                await self._output.send_event(BotStoppedSpeaking())
        if self._agent is not None:
            self._agent.on_interrupted(spoken)
        await self._report(spoken, interrupted=True)
        return spoken

    async def _report(self, text: str, *, interrupted: bool) -> None:
        """The agent turn's record and its metrics. A reply cut off before the caller heard any of it
        is still recorded (empty ``text``, no metrics: it was no turn of the conversation) when it was
        cut for something the caller did and had begun (the agent had words, or it answered speech): its
        :class:`BargeIn` says what cut it."""
        begun = self._first_text_at is not None or self._timing.decided_at is not None
        if not text and not (interrupted and self.barge_ins and begun):
            return
        latency = self.latency()
        record = TurnRecord(
            role="agent",
            text=text,
            started_at=self._started_at,
            ended_at=self._clock.now(),
            interrupted=interrupted,
            latency=latency,
            barge_ins=tuple(self.barge_ins),
        )
        await self._output.send_event(TurnEnded(record))
        if text:
            self._metrics.agent_turns += 1
            await self._output.send_event(Metrics({"turn": latency.as_dict(), **self._metrics.snapshot()}))

    def latency(self) -> TurnLatency:
        t = self._timing
        return TurnLatency(
            endpointing_ms=_ms(t.last_speech_at, t.decided_at),
            stt_ms=_ms(t.decided_at, t.transcript_at) if t.decided_at is not None else None,
            agent_first_token_ms=_ms(t.transcript_at, self._first_text_at),
            tts_first_audio_ms=_ms(self._first_tts_request_at, self._first_tts_audio_at),
            total_ms=_ms(t.last_speech_at, self.player.first_frame_at),
        )

    async def _produce(self) -> None:
        splitter = SentenceSplitter(
            max_chars=self._opts.max_sentence_chars, first_clause_chars=self._opts.first_clause_chars
        )
        try:
            async for event in self._source:
                if isinstance(event, AgentText):
                    if not event.text:
                        continue
                    if self._first_text_at is None:
                        self._first_text_at = self._clock.monotonic()
                    await self._output.send_event(BotLLMText(event.text))
                    for sentence in splitter.push(event.text):
                        self._sentences.put_nowait(sentence)
                elif isinstance(event, AgentData):
                    await self._output.send_event(AgentDataCollected(event.data))
                elif isinstance(event, AgentEndCall | AgentTransfer):
                    # The goodbye (or hand-over line) is played out in full: barge-in no longer cuts it
                    # (but for a goodbye the caller may talk over: the silence timeout's).
                    self._final_action = event
                    self.interruptible = isinstance(event, AgentEndCall) and event.interruptible
        except Exception as error:
            # Play the sentences already complete; the unfinished one may be cut mid-thought.
            self._fail("agent", error)
            self._sentences.put_nowait(None)
            return
        finally:
            await _aclose(self._source)
        rest = splitter.flush()
        if rest:
            self._sentences.put_nowait(rest)
        self._sentences.put_nowait(None)

    async def _synthesize(self) -> None:
        out = self.player.queue
        while (sentence := await self._sentences.get()) is not None:
            if self._tts is None or not self._speak():
                self.tracker.add(sentence, audio=False)
                out.put_nowait(AgentTextFrame(sentence))
                continue
            index = self.tracker.add(sentence, audio=True)
            out.put_nowait(TTSStarted(sentence))
            samples = 0
            resampler = StreamResampler(self._tts.capabilities.sample_rate, self._opts.output_sample_rate)
            framer = Framer(self._opts.output_sample_rate, self._opts.frame_ms)
            if self._first_tts_request_at is None:
                self._first_tts_request_at = self._clock.monotonic()
            audio = self._tts.synthesize(sentence)
            try:
                async for chunk in audio:
                    if self._first_tts_audio_at is None and chunk:
                        self._first_tts_audio_at = self._clock.monotonic()
                    for frame in framer.push(resampler.process(chunk)):
                        samples += self._put_audio(index, frame)
            except Exception as error:
                # Play what was synthesised; stop the agent, whose later text can no longer be spoken.
                self._fail("tts", error)
                if self._producer is not None:
                    self._producer.cancel()
                out.put_nowait(TTSStopped(samples))
                break
            finally:
                await _aclose(audio)
            for frame in framer.push(resampler.flush()):
                samples += self._put_audio(index, frame)
            tail = framer.flush(pad=True)
            if tail is not None:
                samples += self._put_audio(index, tail)
            self.tracker.complete(index)
            out.put_nowait(TTSStopped(samples))
        out.put_nowait(EndFrame())

    def _fail(self, stage: str, error: BaseException) -> None:
        if not self.failed:
            self._metrics.reply_failures += 1
        self.failed = True
        logger.error("agent reply failed in %s", stage, exc_info=error)

    def _put_audio(self, index: int, frame: bytes) -> int:
        n = len(frame) // 2
        self.tracker.add_samples(index, n)
        self.player.queue.put_nowait(TTSAudio(frame))
        return n
