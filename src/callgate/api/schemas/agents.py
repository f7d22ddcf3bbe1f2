"""Agent schemas: AgentCreate, AgentUpdate, AgentPublic."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import AnyHttpUrl, Field, StringConstraints, field_validator, model_validator

from callgate.api.schemas.common import Name, Public, Strict, Variables
from callgate.api.schemas.tools import AgentTool, check_tools, tool_kinds
from callgate.domain.tools import public_tools
from callgate.errors import ValidationFailed
from callgate.flows.schema import validate_flow
from callgate.providers.registry import default_engine, validate_engine_settings
from callgate.providers.settings import Role, stored_engine_settings

EngineSettings = dict[str, Any]
Language = Annotated[str, StringConstraints(max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]


class TurnDetection(Strict):
    """When the caller's turn starts and ends, and when they may cut the agent off. Every field is
    optional: a missing one takes the server's default."""

    end_of_turn_silence_ms: int | None = Field(
        default=None,
        strict=True,
        ge=100,
        le=5000,
        description="Silence after speech that ends the caller's turn (550).",
    )
    early_end_silence_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=5000,
        description=(
            "After this much silence the turn ends at once if the words so far are what a flow step "
            "expects (a slot or an intent: 'tomorrow', 'yes'), or, after finished_sentence_silence_ms, "
            "a finished sentence; 0 turns this off (350)."
        ),
    )
    finished_sentence_silence_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=5000,
        description=(
            "After this much silence the turn ends if the words so far are a finished sentence that is "
            "not what the agent expects ('I need an appointment.': callers often go on after a complete "
            "clause); never sooner than early_end_silence_ms; 0: at early_end_silence_ms (450)."
        ),
    )
    transcribe_pause_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=5000,
        description=(
            "A pause this long (at most early_end_silence_ms) starts transcribing the words so far, so "
            "that they are known when early_end_silence_ms is reached (faster ends of turn, but a "
            "pause longer than early_end_silence_ms then always ends a finished-sounding turn); done "
            "only while the STT has nothing waiting, else at early_end_silence_ms; 0: always at "
            "early_end_silence_ms, so that the turn ends a transcription later (150)."
        ),
    )
    vad_threshold: float | None = Field(
        default=None,
        strict=True,
        gt=0.0,
        le=1.0,
        description="Speech probability that counts as speech (0.5).",
    )
    min_speech_ms: int | None = Field(
        default=None, strict=True, ge=20, le=2000, description="Shorter sounds never start a turn (100)."
    )
    allow_interruptions: bool | None = Field(
        default=None, strict=True, description="The caller may barge in (true)."
    )
    interruption_hold_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=2000,
        description="Caller sound that pauses the agent's audio at once; it resumes where it stopped if "
        "the sound was noise or a backchannel (40).",
    )
    held_wait_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=10000,
        description="Once the caller whose sound holds the agent has finished, how long the agent waits "
        "for their words before it goes on; words that turn out to be an interruption then cut it off; "
        "0: wait for the words (500).",
    )
    held_pause_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=5000,
        description="While caller sound holds the agent, a pause this long (at most transcribe_pause_ms) "
        "has its words transcribed at once: a backchannel lets the agent go on that much sooner; 0: as "
        "any other pause (80).",
    )
    interruption_min_speech_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=5000,
        description="Speech that cuts the agent off without waiting for its words (700); shorter speech "
        "cuts it off when its words are more than a backchannel.",
    )
    continue_window_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=3000,
        description="Caller speech that starts this soon after their turn ended and cuts the agent's answer "
        "off continues that turn: the answer is taken back and all the words are answered together "
        "(unless it ran a tool or ended the call); 0: never (500).",
    )
    early_end_backoff_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=1000,
        description="Each answer taken back (the caller went on after a pause the turn ended in) makes this "
        "call's early_end_silence_ms this much longer than it was and than that pause, up to just under "
        "end_of_turn_silence_ms; 0: fixed (100).",
    )
    backchannels: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        default=None,
        max_length=100,
        description='Phrases that do not stop the agent ("uh-huh", "yeah"); default: a list for the '
        "agent's language; [] makes every word an interruption.",
    )
    preemptive_generation: bool | None = Field(
        default=None,
        strict=True,
        description="Prompt agents: send the LLM request as soon as a pause's words are transcribed, "
        "before silence confirms the end of the turn; if the caller goes on it is cancelled (its tokens "
        "are still spent). Flows: the first sentence of the answer is synthesised during the pause. "
        "Saves up to the rest of end_of_turn_silence_ms on every answer (true).",
    )
    open_phrase_wait: bool | None = Field(
        default=None,
        strict=True,
        description='When the words before a pause leave the sentence open ("I\'d like to book for", '
        '"can you tell me", "um"; English), the pause may last up to max_wait_ms instead of ending '
        "the turn, whatever the end-of-turn model says (true).",
    )
    semantic: bool | None = Field(
        default=None,
        strict=True,
        description="Ask the end-of-turn model (Smart Turn v3) at each pause whether the caller is done: "
        "yes ends the turn at early_end_silence_ms, no waits up to max_wait_ms; without the model "
        "installed, silence only (false).",
    )
    semantic_threshold: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="Probability of 'done' that ends the turn (0.5)."
    )
    max_wait_ms: int | None = Field(
        default=None,
        strict=True,
        ge=100,
        le=10000,
        description="Longest pause when the caller is judged mid-thought, by the end-of-turn model or by "
        "words that leave the sentence open (1500).",
    )
    hangover_cut_db: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=90.0,
        description="Frames this far below the utterance's loudest speech count as silence (35); 0: off.",
    )

    reminder_after_s: float | None = Field(
        default=None,
        ge=0.0,
        le=600.0,
        description="When nothing has been heard for this long after the agent finished speaking (no caller "
        'speech, no answer in progress), the agent says a reminder ("Are you still there?"); 0: never; '
        "not in text calls (10).",
    )
    reminder_max_count: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=10,
        description="Reminders in a row before the agent waits in silence (silence_timeout_s, counted from "
        "the last reminder, then ends the call); a caller turn starts the count again (1).",
    )
    reminders: list[Annotated[str, Field(min_length=1, max_length=500)]] | None = Field(
        default=None,
        max_length=10,
        description="What the agent says, in turn (the last one again when there are more reminders); "
        "{{variables}} are filled in; default: one for the agent's language (English, German, French, "
        "Spanish, Italian, Portuguese, Dutch; other languages have none); [] turns reminders off.",
    )
    silence_goodbye: str | None = Field(
        default=None,
        max_length=500,
        description="What the agent says (or writes, in a text call) before silence_timeout_s ends the "
        "call (it ends after it); "
        "{{variables}} are filled in; default: one for the agent's language (English: \"I'll end the call "
        'now. Goodbye!"; the languages of reminders); "": the call ends without a word.',
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        early, end = self.early_end_silence_ms, self.end_of_turn_silence_ms
        if early and end is not None and early > end:
            raise ValueError("early_end_silence_ms cannot exceed end_of_turn_silence_ms")
        if self.max_wait_ms is not None and end is not None and self.max_wait_ms < end:
            raise ValueError("max_wait_ms cannot be below end_of_turn_silence_ms")
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class AgentFields(Strict):
    initial_message: str | None = Field(default=None, max_length=4000)
    variables: Variables = Field(default_factory=dict)
    voice: str | None = Field(default=None, max_length=200)
    language: Language | None = Field(
        default=None,
        description=(
            "BCP 47 tag the agent listens and speaks in (`en`, `de-DE`), passed to its STT, TTS and LLM "
            "engines; null: English. See docs/providers.md for which engines serve which languages."
        ),
    )
    stt: EngineSettings = Field(
        default_factory=dict,
        description='STT engine settings, e.g. {"engine": "whisper", "model": "tiny.en"} (a model the '
        "server declares; see docs/providers.md)",
    )
    llm: EngineSettings = Field(
        default_factory=dict,
        description='LLM settings (prompt agents): {"engine": "openai", "base_url", "model", "api_key_env"}',
    )
    tts: EngineSettings = Field(
        default_factory=dict, description='TTS engine settings, e.g. {"engine": "piper"}'
    )
    turn_detection: TurnDetection = Field(default_factory=TurnDetection)
    max_duration_s: int = Field(default=1800, strict=True, ge=10, le=14400)
    silence_timeout_s: int = Field(default=60, strict=True, ge=5, le=3600)
    webhook_url: AnyHttpUrl | None = None
    tools: list[AgentTool] = Field(
        default_factory=list,
        description="What the agent can do during a call: http, client and built-in tools (docs/tools.md).",
    )

    def stored_tools(self) -> list[dict[str, Any]]:
        return check_tools(self.tools)


def _check(role: Role, settings: Any, *, at: list[str]) -> None:
    if not isinstance(settings, dict):
        raise ValidationFailed(
            f"invalid {role} settings",
            errors=[{"loc": at, "msg": "Input should be an object", "type": "dict_type"}],
        )
    if "engine" not in settings and default_engine(role) is None:
        # Settings without an engine name the default one; with none installed (never for the LLM) the
        # request is what is wrong, a 422, not an outage (503).
        raise ValidationFailed(
            f"invalid {role} settings",
            errors=[
                {"loc": [*at, "engine"], "msg": f"give `engine`: no default {role} engine", "type": "missing"}
            ],
        )
    validate_engine_settings(role, settings)


def check_engines(values: dict[str, Any]) -> None:
    """Engine settings are checked when given; ``{}`` means the embedded default."""
    roles: tuple[Role, ...] = ("stt", "llm", "tts")
    for role in roles:
        settings = values.get(role)
        if settings:
            engine_settings = {k: v for k, v in settings.items() if not (role == "stt" and k == "vad")}
            if engine_settings:
                _check(role, engine_settings, at=[role])
            if role == "stt" and settings.get("vad"):
                _check("vad", settings["vad"], at=["stt", "vad"])


class AgentCreate(AgentFields):
    name: Name
    prompt: str | None = Field(default=None, min_length=1, max_length=100_000)
    flow: dict[str, Any] | None = Field(
        default=None, description="A scripted conversation (see docs/flows.md)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.prompt is None) == (self.flow is None):
            raise ValueError("give exactly one of `prompt` or `flow`")
        if self.flow is not None:
            # Raises ValidationFailed with errors located under `flow`.
            validate_flow(self.flow, known_variables=self.variables, tools=tool_kinds(self.tools))
        check_engines({"stt": self.stt, "llm": self.llm, "tts": self.tts})
        check_tools(self.tools)
        return self


class AgentUpdate(Strict):
    """Only the fields given change; send `null` to clear an optional field."""

    name: Name | None = None
    prompt: str | None = Field(default=None, min_length=1, max_length=100_000)
    flow: dict[str, Any] | None = None
    initial_message: str | None = Field(default=None, max_length=4000)
    variables: Variables | None = None
    voice: str | None = Field(default=None, max_length=200)
    language: Language | None = Field(
        default=None,
        description=(
            "BCP 47 tag the agent listens and speaks in (`en`, `de-DE`), passed to its STT, TTS and LLM "
            "engines; null: English. See docs/providers.md for which engines serve which languages."
        ),
    )
    stt: EngineSettings | None = None
    llm: EngineSettings | None = None
    tts: EngineSettings | None = None
    turn_detection: TurnDetection | None = None
    max_duration_s: int | None = Field(default=None, strict=True, ge=10, le=14400)
    silence_timeout_s: int | None = Field(default=None, strict=True, ge=5, le=3600)
    webhook_url: AnyHttpUrl | None = None
    tools: list[AgentTool] | None = None

    @model_validator(mode="after")
    def _tools(self) -> Self:
        if self.tools is not None:
            check_tools(self.tools)
        return self

    def changes(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude_unset=True)
        if self.turn_detection is not None:
            out["turn_detection"] = self.turn_detection.stored()
        if "tools" in out:
            out["tools"] = check_tools(self.tools) if self.tools is not None else []
        check_engines(out)
        required_fields = (
            "name", "variables", "stt", "llm", "tts", "turn_detection", "max_duration_s", "silence_timeout_s",
        )  # fmt: skip
        for required in required_fields:
            if required in out and out[required] is None:
                raise ValueError(f"`{required}` cannot be null")
        return out


class AgentPublic(Public):
    id: str
    name: str
    prompt: str | None
    flow: dict[str, Any] | None
    initial_message: str | None
    variables: dict[str, Any]
    voice: str | None
    language: str | None = None
    stt: dict[str, Any]
    llm: dict[str, Any]
    tts: dict[str, Any]
    turn_detection: dict[str, Any]
    max_duration_s: int
    silence_timeout_s: int
    webhook_url: str | None
    tools: list[dict[str, Any]] = Field(description="As given; header values hidden.")
    created_at: datetime
    updated_at: datetime

    @field_validator("tools", mode="before")
    @classmethod
    def _hide(cls, value: Any) -> list[dict[str, Any]]:
        return public_tools(value)

    @field_validator("stt", mode="before")
    @classmethod
    def _in_effect(cls, value: Any) -> dict[str, Any]:
        """As this server runs them: settings an older version stored and this one ignores are not
        shown (so what is read can be written back)."""
        return stored_engine_settings("stt", value if isinstance(value, dict) else None)
