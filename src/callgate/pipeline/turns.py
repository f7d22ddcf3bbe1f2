"""Turn detection: VAD speech probabilities per 20 ms frame -> caller speech start and end of turn.

A pure state machine (no asyncio, no clock): the caller feeds each frame with its speech probability and
arrival time and gets back at most one event. Time is counted in audio frames, so endpointing is exact
and independent of event-loop jitter::

    QUIET --speech--> CANDIDATE --min_speech_ms of speech--> SPEAKING --end_of_turn_silence_ms--> QUIET
                      CANDIDATE --a short gap--> QUIET (noise: a click or a cough)

While SPEAKING, ``transcribe_pause_ms`` of silence (at most ``early_end_silence_ms``) gives
:class:`SpeechPaused` (the words so far can be transcribed, the end-of-turn model asked), speech after it
:class:`SpeechResumed`, and once the pause reaches ``early_end_silence_ms`` the owner may end the turn at
once with :meth:`TurnDetector.end_now` when the caller is judged done, or make this pause
last up to ``max_wait_ms`` with :meth:`TurnDetector.wait_longer` when they are judged mid-thought. A
candidate that turns out to be noise gives :class:`SpeechAborted`.

While SPEAKING a frame far quieter than the utterance's loudest speech (``hangover_cut_db``) counts as
silence whatever VAD says, which removes most of Silero's ~100 ms hang-over after the voice stops.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass

from callgate.pipeline.audio import dbfs
from callgate.pipeline.options import PipelineOptions

logger = logging.getLogger(__name__)

_CANDIDATE_GAP_MS = 60
"""Silence that aborts a speech candidate that has not reached ``min_speech_ms`` yet."""
_KEEP_TRAILING_SILENCE_MS = 200
"""Silence kept at the end of an utterance handed to STT; the rest is only endpointing delay."""


class SpeechState(enum.Enum):
    QUIET = "quiet"
    CANDIDATE = "candidate"
    SPEAKING = "speaking"


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio: bytes
    """Pre-roll plus the speech that confirmed the start; later frames follow one by one."""
    first_speech_at: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    audio: bytes
    """The whole utterance: pre-roll, speech, at most 200 ms of trailing silence."""
    first_speech_at: float
    last_speech_at: float
    """Arrival time of the last frame that was speech."""
    speech_ms: float
    forced: bool = False
    """True if ``max_utterance_ms`` ended it rather than a pause."""


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """``transcribe_pause_ms`` of silence after speech (at most ``early_end_silence_ms``): the turn may be
    over; it may end once the pause reaches ``early_end_silence_ms``."""

    audio: bytes
    """The utterance so far, as :class:`SpeechEnded` would give it now."""
    last_speech_at: float


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """Speech again after a :class:`SpeechPaused`: the words heard at the pause were not all."""


@dataclass(frozen=True, slots=True)
class SpeechAborted:
    """A speech candidate ended before ``min_speech_ms``: it was noise (a click, a cough)."""


TurnEvent = SpeechStarted | SpeechEnded | SpeechPaused | SpeechResumed | SpeechAborted


class TurnDetector:
    def __init__(self, options: PipelineOptions, *, sample_rate: int) -> None:
        self._opts = options
        self._frame_ms = float(options.frame_ms)
        self._frame_bytes = sample_rate * options.frame_ms // 1000 * 2
        self._preroll: deque[bytes] = deque(maxlen=max(1, options.preroll_ms // options.frame_ms))
        self._utterance = bytearray()
        self.state = SpeechState.QUIET
        self.speech_ms = 0.0
        """Speech accumulated in the current utterance (pauses excluded)."""
        self._silence_ms = 0.0
        self._total_ms = 0.0
        self._first_speech_at = 0.0
        self._last_speech_at = 0.0
        self._paused = False
        self.held = False
        """The agent's audio is held by this speech: its pauses come at ``held_pause_ms``."""
        self._end_silence_ms = float(options.end_of_turn_silence_ms)
        self._peak_dbfs = -120.0
        """Loudest speech frame of the utterance (for the hang-over cut)."""

    @property
    def in_speech(self) -> bool:
        return self.state is SpeechState.SPEAKING

    def retune(self, options: PipelineOptions) -> None:
        """New options for the pauses to come (the current one keeps the end it was given)."""
        self._opts = options

    @property
    def silence_ms(self) -> float:
        """Silence since the caller's last speech frame in the current utterance."""
        return self._silence_ms

    def process(self, frame: bytes, probability: float, at: float) -> TurnEvent | None:
        is_speech = probability >= self._opts.vad_threshold
        if self.state is SpeechState.QUIET:
            if not is_speech:
                self._preroll.append(frame)
                return None
            self._set_state(SpeechState.CANDIDATE)
            self._utterance = bytearray(b"".join(self._preroll))
            self._preroll.clear()
            self.speech_ms = self._silence_ms = self._total_ms = 0.0
            self._first_speech_at = at
            self._peak_dbfs = -120.0
        cut = self._opts.hangover_cut_db
        if is_speech and cut > 0:
            level = dbfs(frame)
            if level < self._peak_dbfs - cut:
                is_speech = False  # VAD's hang-over: the voice has stopped
            else:
                self._peak_dbfs = max(self._peak_dbfs, level)
        self._utterance.extend(frame)
        self._total_ms += self._frame_ms
        if is_speech:
            self.speech_ms += self._frame_ms
            self._silence_ms = 0.0
            self._last_speech_at = at
        else:
            self._silence_ms += self._frame_ms

        if self.state is SpeechState.CANDIDATE:
            if self._silence_ms >= _CANDIDATE_GAP_MS:
                self._abort_candidate()
                return SpeechAborted()
            if self.speech_ms >= max(self._opts.min_speech_ms, self._frame_ms):
                self._set_state(SpeechState.SPEAKING)
                return SpeechStarted(audio=bytes(self._utterance), first_speech_at=self._first_speech_at)
            return None

        forced = self._total_ms >= self._opts.max_utterance_ms
        if self._silence_ms >= self._end_silence_ms or forced:
            return self._end(forced=forced and self._silence_ms < self._end_silence_ms)
        if is_speech and self._paused:
            self._paused = False
            self._end_silence_ms = float(self._opts.end_of_turn_silence_ms)
            return SpeechResumed()
        early = self._opts.early_end_silence_ms
        pause = min(early, self._opts.transcribe_pause_ms or early)
        if self.held and self._opts.held_pause_ms:
            pause = min(pause, self._opts.held_pause_ms)
        if 0 < early < self._opts.end_of_turn_silence_ms and not self._paused and self._silence_ms >= pause:
            self._paused = True
            return SpeechPaused(audio=self._trimmed(), last_speech_at=self._last_speech_at)
        return None

    @property
    def waiting_longer(self) -> bool:
        """The current pause was let last beyond ``end_of_turn_silence_ms`` (:meth:`wait_longer`)."""
        return self._end_silence_ms > self._opts.end_of_turn_silence_ms

    def wait_longer(self, silence_ms: float) -> None:
        """Let the current pause last up to ``silence_ms`` before the turn ends (the caller is judged
        mid-thought); speech resets it."""
        if self.state is SpeechState.SPEAKING:
            self._end_silence_ms = max(float(self._opts.end_of_turn_silence_ms), silence_ms)

    def end_now(self) -> SpeechEnded:
        """End the turn in progress (SPEAKING) now: its words were judged complete at a pause."""
        if self.state is not SpeechState.SPEAKING:
            raise RuntimeError(f"no turn in progress ({self.state.value})")
        return self._end(forced=False)

    def reset(self) -> None:
        """Forget any utterance in progress (e.g. after the pipeline stops listening)."""
        self._preroll.clear()
        self._utterance = bytearray()
        self.speech_ms = self._silence_ms = self._total_ms = 0.0
        self._paused = False
        self._end_silence_ms = float(self._opts.end_of_turn_silence_ms)
        self._set_state(SpeechState.QUIET)

    def _abort_candidate(self) -> None:
        # The candidate was noise: its audio becomes pre-roll again for the next real start.
        data = bytes(self._utterance)
        fb = self._frame_bytes
        for i in range(0, len(data) - fb + 1, fb):
            self._preroll.append(data[i : i + fb])
        self._utterance = bytearray()
        self.speech_ms = 0.0
        self._set_state(SpeechState.QUIET)

    def _trimmed(self) -> bytes:
        """The utterance with at most ``_KEEP_TRAILING_SILENCE_MS`` of its trailing silence."""
        extra_ms = max(0.0, self._silence_ms - _KEEP_TRAILING_SILENCE_MS)
        cut = int(extra_ms / self._frame_ms) * self._frame_bytes
        return bytes(self._utterance[: len(self._utterance) - cut] if cut else self._utterance)

    def _end(self, *, forced: bool) -> SpeechEnded:
        event = SpeechEnded(
            audio=self._trimmed(),
            first_speech_at=self._first_speech_at,
            last_speech_at=self._last_speech_at,
            speech_ms=self.speech_ms,
            forced=forced,
        )
        self._utterance = bytearray()
        self.speech_ms = self._silence_ms = self._total_ms = 0.0
        self._paused = False
        self._end_silence_ms = float(self._opts.end_of_turn_silence_ms)
        self._set_state(SpeechState.QUIET)
        return event

    def _set_state(self, state: SpeechState) -> None:
        if state is not self.state:
            logger.debug("caller speech %s -> %s", self.state.value, state.value)
            self.state = state
