"""Provider credential schemas: the key goes in, never out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from callgate.api.schemas.common import Name, Strict

Vendor = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]


class ProviderCredentialCreate(Strict):
    name: Name
    provider: Vendor = Field(description="The vendor it is for, e.g. `deepgram`, `elevenlabs`, `anthropic`.")
    secret: str = Field(
        min_length=1, max_length=4096, description="The API key; sealed at rest, never returned."
    )


class ProviderCredentialPublic(BaseModel):
    id: str
    name: str
    provider: str
    created_at: datetime
