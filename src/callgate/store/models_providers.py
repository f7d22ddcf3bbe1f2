"""Table of a team's cloud provider credentials (migration ``0013_provider_credentials``).

``provider_credential`` holds one API key for a speech or language vendor (Deepgram, ElevenLabs,
Anthropic …), named by id from an agent's ``stt``/``tts``/``llm`` settings (``"credential_id"``). The key
is sealed at rest like webhook signing secrets (:mod:`callgate.store.sealing`); the API never returns it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callgate.store.models import Base
from callgate.store.sealing import SealedString


class SealedText(SealedString):
    """A sealed secret that may be longer than 255 characters (e.g. a vendor's long API token)."""

    impl = Text()
    cache_ok = True


class ProviderCredential(Base):
    __tablename__ = "provider_credential"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(40))
    """The vendor it is for, as the user labels it (``deepgram``, ``elevenlabs`` …): informative only."""
    secret: Mapped[str] = mapped_column(SealedText())
    created_at: Mapped[datetime]

    __table_args__ = (Index(None, "team_id", "created_at"),)
