"""Pipeline options, the output protocol the transport implements, and the pipeline's counters."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Protocol

from callgate.errors import ConfigError
from callgate.pipeline.frames import PipelineEvent

Mode = Literal["audio", "text", "audio_text"]
MODES: tuple[Mode, ...] = ("audio", "text", "audio_text")

INPUT_SAMPLE_RATE = 16000
"""Caller audio handed to :meth:`ConversationPipeline.push_audio` is always 16 kHz mono PCM16."""


class PipelineOutput(Protocol):
    """Where the pipeline sends agent audio and events; implemented by each transport."""

    async def send_audio(self, pcm16: bytes) -> None:
        """One 20 ms frame of agent audio at ``PipelineOptions.output_sample_rate``, sent in real time."""
        ...

    async def send_event(self, event: PipelineEvent) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineOptions:
    """Tuning of one call's pipeline. Validates itself; raises :class:`ConfigError`."""

    mode: Mode = "audio"
    """Initial output mode; switch with ``set_mode``."""
    output_sample_rate: int = 16000
    frame_ms: int = 20
    language: str = "en"

    vad_threshold: float = 0.5
    """Speech probability at or above which a frame counts as speech."""
    min_speech_ms: int = 100
    """Speech shorter than this is noise (a click, a cough) and never starts a turn."""
    end_of_turn_silence_ms: int = 550
    """Silence after speech that ends the caller's turn."""
    early_end_silence_ms: int = 350
    """After this much silence, if the words so far (transcribed by a batch STT at
    ``transcribe_pause_ms``) are what the agent expects (or, after ``finished_sentence_silence_ms``, a
    finished sentence), the turn ends then, without waiting for ``end_of_turn_silence_ms``. 0 (or a
    value not below ``end_of_turn_silence_ms``): never early."""
    finished_sentence_silence_ms: int = 450
    """A pause's words that are only a finished sentence ("I need an appointment.") end the turn after
    this much silence (never sooner than ``early_end_silence_ms``); words that answer what the agent
    expects (a flow step's slot or intent: "tomorrow", "yes") end it at ``early_end_silence_ms``. A
    complete clause is the weaker sign: callers often go on after one ("I need an appointment | for my
    daughter next week"), while an expected answer is seldom followed by more. A prompt agent loses
    little by the longer wait: its LLM request starts when the pause's words are known
    (``preemptive_generation``), and its first words seldom come sooner. Measured on bench/turns.py's
    corpus: at 350 ms 2 of 32 mid-sentence pauses (429 and 445 ms, after a complete clause) cut the
    caller off; at 450 none. 0 (or a value not above ``early_end_silence_ms``): at
    ``early_end_silence_ms``, as an expected answer."""
    transcribe_pause_ms: int = 150
    """A pause this long (capped at ``early_end_silence_ms``) starts the speculative transcription (and
    asks the end-of-turn model), so that the words are known when ``early_end_silence_ms`` is reached
    and the turn can end right then instead of a transcription later (~90-200 ms with Whisper tiny.en on
    two cores). A pause that ends sooner costs a transcription for nothing, so it is only done while the
    STT has nothing waiting (:meth:`~callgate.pipeline.interfaces.STT.busy`); otherwise the
    transcription starts at ``early_end_silence_ms``. 0: always at ``early_end_silence_ms``.

    Measured with bench/latency.py on one machine, one session, line by line against 0/250 (the old
    defaults, whose early end waited for a transcription started at 250 ms): 150/300 answered 119-139 ms
    sooner but cut 6 of 84 turns at a 260-300 ms pause after a complete clause or an expected answer
    (piper's "No thank you, | goodbye", "Yes, | that's right"); 150/350 answered 60-84 ms sooner and
    cut none of 84 (BENCHMARKS.md, "Voice-to-voice latency")."""
    preroll_ms: int = 200
    """Audio kept from before the detected speech start, so STT hears the first syllable."""
    max_utterance_ms: int = 30_000
    """An utterance this long is ended even without a pause."""
    hangover_cut_db: float = 35.0
    """While the caller speaks, a frame this many dB quieter than the loudest speech of the utterance is
    silence whatever VAD says: Silero's probability stays high for ~100 ms after the voice stops (its
    recurrent state and 32 ms windows), which only delays the end of the turn. In noise the level never
    falls that far and VAD decides alone. 0: off."""

    preemptive_generation: bool = True
    """Ask the agent for its answer as soon as a pause's speculative transcript is ready, before the turn
    is known to have ended (:meth:`AgentEngine.prepare`): when silence then ends the turn with the same
    words, the answer (a prompt agent's LLM request) is already on its way. If the caller goes on, the
    early request is cancelled; it costs the LLM tokens it used. A flow, whose answer is known at once
    (:meth:`AgentEngine.predict_reply`), has the first sentence of that answer synthesised during the
    pause instead (:meth:`TTS.prefetch`: kept by the TTS cache), so that its audio starts at once when
    the turn ends. Batch STT only (streaming engines do not speculate)."""

    open_phrase_wait: bool = True
    """When a pause's words leave the sentence open ("I'd like to book for", "can you tell me", "um") or
    ask for a moment ("let me check", "hang on"; English, :func:`callgate.pipeline.utterance.trails_off`),
    the pause may last up to ``max_wait_ms`` instead of ending the turn at ``end_of_turn_silence_ms``,
    with or without the end-of-turn model (its "done" is overruled). Batch STT only (the words of a pause
    come from its speculative transcript). False: a pause's words only ever end a turn early."""

    semantic: bool = False
    """Ask the end-of-turn model at each pause (``early_end_silence_ms``) whether the caller is done: yes
    ends the turn then; no waits up to ``max_wait_ms`` of silence. Needs a model (without one: silence
    only, as if False)."""
    semantic_threshold: float = 0.5
    """Probability of "finished" at or above which the model's yes counts."""
    max_wait_ms: int = 1500
    """Silence that ends the turn when the caller is judged mid-thought (by the model, or by words that
    leave the sentence open)."""

    allow_interruptions: bool = True
    interruption_hold_ms: int = 40
    """Caller speech that pauses the agent's audio at once (its reply keeps going underneath). 40 ms (two
    frames) rather than 60 stops the agent ~20-30 ms sooner at no measured cost in holds on short room
    sounds (``bench/turns.py --short-sounds``). The pause
    ends one of two ways: the agent resumes its sentence where it stopped (the sound was noise, or the
    words a backchannel such as "uh-huh"), or it is cut off (see ``interruption_min_speech_ms``)."""
    held_pause_ms: int = 80
    """While caller sound holds the agent's audio, a pause this long (at most ``transcribe_pause_ms``)
    has its words transcribed at once, even when the STT has work waiting: if they are a backchannel
    ("uh-huh"), the agent goes on that much sooner. 0: as any other pause."""
    held_wait_ms: int = 500
    """Once the caller whose sound holds the agent has finished (their turn ended), how long the agent
    waits for their words: then it goes on (``slow_words``), so that a slow STT (Whisper trying an
    unclear word again in its 30 s window, a loaded machine) is not dead air; words that turn out to
    be an interruption cut it off when they come. 0: wait for the words."""
    interruption_min_speech_ms: int = 700
    """Caller speech this long cuts the agent off without waiting for the words (longer than any
    backchannel); shorter speech cuts it off only if its transcript is more than a backchannel."""
    continue_window_ms: int = 500
    """Caller speech that starts this soon after their turn ended, and cuts off the agent's answer to it,
    continues that turn (a pause after a complete clause: "I need an appointment | for my daughter"):
    the answer is taken back (:meth:`AgentEngine.take_back`) and the agent answers all the words
    together. Later speech is a new turn. 0: never."""
    early_end_backoff_ms: int = 100
    """Each answer taken back (``continue_window_ms``: the caller went on after a pause their turn ended
    in) makes this call's ``early_end_silence_ms`` this much longer than it was and than the pause the
    caller took, up to just under ``end_of_turn_silence_ms``: a caller who pauses mid-sentence is given
    more time for the rest of the call, as a person would. 0: the early end stays as set."""
    backchannels: tuple[str, ...] | None = None
    """Phrases that acknowledge without taking the turn, lower case; None: the defaults of ``language``
    (:data:`callgate.pipeline.backchannel.BACKCHANNELS`); empty: every word interrupts."""

    reminder_after_s: float = 10.0
    """When nothing has been heard for this long after the agent finished speaking (no caller speech,
    no agent audio, no answer in progress), the agent says a reminder ("Are you still there?"), as a
    person on the line would. 0: never."""
    reminder_max_count: int = 1
    """Reminders in a row before the agent waits in silence (the session's silence timeout, counted from
    the last reminder, then ends the call); each caller turn starts the count again. 0: never."""
    reminders: tuple[str, ...] | None = None
    """What the agent says, in turn (the last one again if there are more reminders than texts); None:
    the defaults of ``language`` (:data:`callgate.pipeline.reminders.REMINDERS`; no reminders in a
    language without defaults); empty: no reminders."""
    silence_goodbye: str | None = None
    """What the agent says before the session's silence timeout ends the call (the call then ends after
    it); None: the default of ``language`` (:data:`callgate.pipeline.reminders.GOODBYES`); empty: the
    call ends without a word."""

    max_input_buffer_ms: int = 1000
    """Caller audio queued beyond this is dropped, oldest first, and counted."""
    late_frame_ms: int = 40
    """An output frame sent this long after its scheduled time counts as late."""
    max_sentence_chars: int = 250
    """Text without a sentence end is cut for TTS after this many characters."""
    first_clause_chars: int = 24
    """A reply's first sentence is cut for TTS at its first comma (or ``;``, ``:``, dash) after this many
    characters, so its audio starts after a phrase; 0: whole sentences only."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.output_sample_rate <= 0 or self.frame_ms <= 0:
            raise ConfigError("output_sample_rate and frame_ms must be positive")
        for rate in (self.output_sample_rate, INPUT_SAMPLE_RATE):
            if (rate * self.frame_ms) % 1000:
                raise ConfigError(f"{self.frame_ms} ms is not a whole number of samples at {rate} Hz")
        if not 0.0 < self.vad_threshold <= 1.0:
            raise ConfigError("vad_threshold must be in (0, 1]")
        for f in fields(self):
            if f.name.endswith("_ms") and f.name != "frame_ms":
                value = getattr(self, f.name)
                if value < 0:
                    raise ConfigError(f"{f.name} must not be negative")
        if self.end_of_turn_silence_ms < self.frame_ms:
            raise ConfigError("end_of_turn_silence_ms must be at least one frame")
        if not 0.0 < self.semantic_threshold < 1.0:
            raise ConfigError("semantic_threshold must be in (0, 1)")
        if self.max_wait_ms < self.end_of_turn_silence_ms:
            raise ConfigError("max_wait_ms must not be below end_of_turn_silence_ms")
        if self.hangover_cut_db < 0:
            raise ConfigError("hangover_cut_db must not be negative")

        if self.reminder_after_s < 0 or self.reminder_max_count < 0:
            raise ConfigError("reminder_after_s and reminder_max_count must not be negative")
        if self.max_sentence_chars < 20:
            raise ConfigError("max_sentence_chars must be at least 20")


@dataclass(slots=True)
class PipelineMetrics:
    """Counters of one pipeline, read by the session for export. Only the pipeline writes them."""

    input_chunks: int = 0
    input_dropped_chunks: int = 0
    input_dropped_ms: float = 0.0
    """Caller audio discarded because the pipeline fell behind."""
    frames_sent: int = 0
    late_frames: int = 0
    """Output frames sent more than ``late_frame_ms`` after their scheduled time."""
    max_output_lag_ms: float = 0.0
    interruptions: int = 0
    barge_in_holds: int = 0
    """Times caller sound held the agent's audio; ``barge_in_resumes`` of them let it go on."""
    barge_in_resumes: int = 0
    turns_taken_back: int = 0
    """Answers taken back because the caller went on with the turn they answered (``continue_window_ms``)."""
    user_turns: int = 0
    agent_turns: int = 0
    reminders: int = 0
    """Reminders said because the line was quiet (``reminder_after_s``)."""
    stt_failures: int = 0
    reply_failures: int = 0

    def snapshot(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}
