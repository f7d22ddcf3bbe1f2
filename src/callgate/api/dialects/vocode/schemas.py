"""The Vocode dialect's request bodies, parsed into callgate terms.

Vocode's API is FastAPI on Pydantic models that ignore unknown fields, so these do too. The seed's shapes
are accepted, and so are the later client library's (a prompt object with ``content``, an agent ``name``,
more voice and action types) where that is safe.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from callgate.api.dialects.errors import Lenient
from callgate.api.schemas.contacts import E164
from callgate.domain.vocode_agents import EventType
from callgate.errors import ValidationFailed

VarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]

VOICE_FIELDS: dict[str, tuple[str, ...]] = {
    "voice_base": ("voice_name",),
    "voice_azure": ("voice_name",),
    "voice_rime": ("speaker",),
    "voice_eleven_labs": ("voice_id",),
    "voice_play_ht": ("voice_id",),
}
"""Voice types and the field each needs (the voice's name in its engine)."""

NEEDS_PHONE_NUMBER = ("action_transfer_call", "action_add_to_conference")


class VoiceParams(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["voice_base", "voice_azure", "voice_rime", "voice_eleven_labs", "voice_play_ht"]
    voice_name: str | None = Field(default=None, min_length=1, max_length=200)
    pitch: int = 0
    rate: int = 15

    @model_validator(mode="after")
    def _has_its_name(self) -> VoiceParams:
        for name in VOICE_FIELDS[self.type]:
            value = getattr(self, name, None)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"a {self.type} voice needs `{name}`")
        return self

    def as_object(self) -> dict[str, Any]:
        """The stored voice object. A third-party ``api_key`` is not kept (callgate never uses it)."""
        values = self.model_dump(exclude={"api_key"})
        if self.type not in ("voice_base", "voice_azure"):
            values = {k: v for k, v in values.items() if k not in ("voice_name", "pitch", "rate")}
        return {"id": str(uuid.uuid4()), **values}

    @property
    def name(self) -> str:
        return str(getattr(self, VOICE_FIELDS[self.type][0]))


class ActionParams(Lenient):
    type: Literal[
        "action_end_conversation",
        "action_transfer_call",
        "action_dtmf",
        "action_add_to_conference",
        "action_set_hold",
        "action_external",
    ]
    config: dict[str, Any] = Field(default_factory=dict)
    action_trigger: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _transfer_target(self) -> ActionParams:
        if self.type in NEEDS_PHONE_NUMBER and not isinstance(self.config.get("phone_number"), str):
            raise ValueError(f"{self.type} needs config.phone_number")
        return self

    def as_object(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": str(uuid.uuid4()), "type": self.type, "config": self.config}
        if self.action_trigger is not None:
            out["action_trigger"] = self.action_trigger
        return out


class WebhookParams(Lenient):
    subscriptions: list[EventType]
    url: AnyHttpUrl
    method: Literal["GET", "POST"] = "POST"

    def as_object(self) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "subscriptions": list(self.subscriptions),
            "url": str(self.url),
            "method": self.method,
        }


class PromptParams(Lenient):
    content: str = Field(min_length=1, max_length=100_000)


class AgentParams(Lenient):
    """An inline agent. ``voice``, ``actions[]`` and ``webhook`` may also be ids of existing objects,
    which callgate does not have (it answers 404)."""

    prompt: Annotated[str, Field(min_length=1, max_length=100_000)] | PromptParams
    voice: str | VoiceParams
    actions: list[str | ActionParams] = Field(default_factory=list, max_length=20)
    initial_message: str | None = Field(default=None, max_length=4000)
    webhook: str | WebhookParams | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt.content


class CreateCallRequest(Lenient):
    from_number: str = Field(min_length=1, max_length=32)
    to_number: E164
    agent: Any = Field(description="An agent id (uuid) or an inline agent.")
    on_no_human_answer: Literal["continue", "hangup"] | None = None
    run_do_not_call_detection: bool | None = None
    hipaa_compliant: bool | None = None
    context: dict[VarName, str | None] | None = None
    telephony_params: dict[str, str | None] | None = None

    def options(self) -> dict[str, Any]:
        """What Vocode lets a call carry beyond its numbers and agent, as given (shown back)."""
        fields = ("on_no_human_answer", "run_do_not_call_detection", "hipaa_compliant", "telephony_params")
        return {name: value for name in fields if (value := getattr(self, name)) is not None}

    def variables(self) -> dict[str, str]:
        """Vocode's ``context`` fills the prompt's ``{{placeholders}}``, as callgate's variables do."""
        return {k: v for k, v in (self.context or {}).items() if v is not None}


_UNION_TAGS = {"str", "VoiceParams", "ActionParams", "WebhookParams", "PromptParams"}


def _plain(loc: tuple[int | str, ...]) -> list[int | str]:
    """A location without Pydantic's union-member tags (``str``, ``function-after[…, VoiceParams]``)."""
    return [p for p in loc if not (isinstance(p, str) and (p in _UNION_TAGS or p.startswith("function-")))]


def parse_agent(value: Any) -> str | AgentParams:
    """``agent`` as an id (a string) or an inline agent; errors located under ``body.agent``."""
    if isinstance(value, str) and 0 < len(value.strip()) <= 64:
        return value.strip()
    if not isinstance(value, dict):
        raise ValidationFailed(
            "invalid fields: body.agent",
            errors=[
                {
                    "loc": ["body", "agent"],
                    "msg": "Input should be an agent id (at most 64 characters) or an agent object",
                    "type": "model_type",
                }
            ],
        )
    try:
        return AgentParams.model_validate(value)
    except ValidationError as exc:
        errors = [
            {"loc": ["body", "agent", *_plain(err["loc"])], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ]
        raise ValidationFailed("invalid fields: body.agent", errors=errors) from exc
