"""Shared schema pieces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

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

Cursor = Annotated[
    str | None,
    Query(max_length=512, description="The `next_cursor` of the previous page (opaque)."),
]
"""A page cursor: ours are well under 512 characters; anything longer is a 422, not a database query."""


def _utc_representable(value: datetime) -> datetime:
    """A time with a zone must also exist in UTC, as it is stored and compared (9999-12-31T23:00-14:00
    and 0001-01-01T00:00+14:00 do not)."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("the time is out of range") from exc
    return value


Time = Annotated[datetime, AfterValidator(_utc_representable)]
"""A time in a query filter."""


def _text_only(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("give the time as an RFC 3339 string, e.g. 2030-01-01T00:00:00Z")
    return value


BodyTime = Annotated[datetime, BeforeValidator(_text_only), AfterValidator(_utc_representable)]
"""A time in a JSON body: an RFC 3339 string only (a number is not taken as a Unix time)."""
