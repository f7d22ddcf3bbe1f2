"""Agent tool schemas: one model per ``type``, a discriminated union (see docs/tools.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import AnyHttpUrl, Field, StringConstraints, field_validator, model_validator

from callgate.api.schemas.common import Strict
from callgate.flows.tool_args import schema_error

__all__ = ["AgentTool", "check_tools", "tool_kinds"]

ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Description = Annotated[str, StringConstraints(max_length=2000)]
Message = Annotated[str, StringConstraints(min_length=1, max_length=500)]
# A header name as RFC 9110 allows it; values are any visible text (no line breaks: no header injection).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection",
     "webhook-id", "webhook-timestamp", "webhook-signature"}
)  # fmt: skip
MAX_TOOLS = 32


class _Tool(Strict):
    description: Description | None = Field(default=None, description="Told to the model: when to use it.")


class _Defined(_Tool):
    name: ToolName = Field(description="What the model calls it (letters, digits, _ and -; ≤ 64).")
    description: Description = Field(
        min_length=1, description="Told to the model: what it does, when to use it."
    )
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments (an object).",
    )
    message: Message | None = Field(
        default=None, description='Said while it runs ("One moment while I check.").'
    )

    @field_validator("parameters")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if (problem := schema_error(value)) is not None:
            raise ValueError(problem)
        return value


class HttpTool(_Defined):
    """Runs on your server: a signed JSON request (docs/tools.md)."""

    type: Literal["http"]
    url: AnyHttpUrl
    method: Literal["POST", "PUT", "PATCH", "GET"] = "POST"
    headers: dict[str, Annotated[str, StringConstraints(max_length=4000)]] = Field(
        default_factory=dict,
        description="Sent with every request (e.g. Authorization). Values are sealed at rest and shown "
        'as "********"; send "********" back to keep a stored value.',
    )
    timeout_ms: int = Field(default=5000, ge=100, le=30_000)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20:
            raise ValueError("at most 20 headers")
        for name, text in value.items():
            if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name!r} cannot be set as a header")
            if any(c in text for c in "\r\n"):
                raise ValueError(f"header {name!r} may not contain line breaks")
        return value

    def stored(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude_none=True)
        out["url"] = str(self.url)
        return out


class ClientTool(_Defined):
    """Runs in the caller's browser: the SDK's ``call.registerTool(name, handler)``."""

    type: Literal["client"]
    timeout_ms: int = Field(default=10_000, ge=100, le=60_000)


class EndCallTool(_Tool):
    """Always available; list it only to change its description."""

    type: Literal["end_call"]


class TransferCallTool(_Tool):
    type: Literal["transfer_call"]
    target: Annotated[str, StringConstraints(min_length=1, max_length=300)] | None = Field(
        default=None, description="A phone number (E.164) or SIP URI: where every transfer goes."
    )
    destinations: list[Annotated[str, StringConstraints(min_length=1, max_length=300)]] | None = Field(
        default=None, max_length=20, description="Or: the targets the model may choose from (by argument)."
    )

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.target is None) == (not self.destinations):
            raise ValueError("give exactly one of `target` or `destinations`")
        return self


class SendDtmfTool(_Tool):
    """Phone calls whose transport can send key tones (docs/tools.md)."""

    type: Literal["send_dtmf"]


class WaitTool(_Tool):
    type: Literal["wait"]


AgentTool = Annotated[
    HttpTool | ClientTool | EndCallTool | TransferCallTool | SendDtmfTool | WaitTool,
    Field(discriminator="type"),
]


def stored(tool: Any) -> dict[str, Any]:
    if isinstance(tool, HttpTool):
        return tool.stored()
    out: dict[str, Any] = tool.model_dump(mode="json", exclude_none=True)
    return out


def check_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """Tool names unique (a built-in's name is its type); the stored form."""
    if len(tools) > MAX_TOOLS:
        raise ValueError(f"an agent has at most {MAX_TOOLS} tools")
    names = [getattr(t, "name", None) or t.type for t in tools]  # as tool_kinds() names them
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two tools are named {name!r}")
        seen.add(name)
    builtin = {"end_call", "transfer_call", "send_dtmf", "wait"}
    for tool in tools:
        if getattr(tool, "name", None) in builtin:
            raise ValueError(f'{tool.name!r} is a built-in tool: use {{"type": "{tool.name}"}}')
    return [stored(t) for t in tools]


def tool_kinds(tools: list[Any]) -> dict[str, str]:
    """Each tool's name (a built-in's is its type) and its type."""
    return {getattr(t, "name", None) or t.type: t.type for t in tools}
