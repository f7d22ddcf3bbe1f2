"""Shared schema pieces."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

T = TypeVar("T")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class Strict(BaseModel):
    """Request bodies: unknown fields are errors, so typos never pass silently.

    Text may not contain U+0000: PostgreSQL cannot store it, and SQLite must behave the same.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("text may not contain the NUL character (U+0000)")
        return data


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ListPage(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Metadata = Annotated[dict[str, Any], Field(description="Your own data, returned as given (JSON object).")]
Variables = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], str | int | float | bool
    ],
    Field(description="Values for `{{name}}` placeholders in the agent's prompt, flow and messages."),
]
