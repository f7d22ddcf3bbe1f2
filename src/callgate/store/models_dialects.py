"""Tables of the dialect area: a team's optional call-credit balance (the VoiceHub "credits")."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from callgate.store.models import Base


class TeamCredit(Base):
    """A team's balance of call-seconds. No row: the team is not metered.

    ``balance_s`` is what was left at ``settled_at``; the seconds that calls were live since then are
    subtracted when the balance is read (:mod:`callgate.domain.credits`), so sessions never write here.
    """

    __tablename__ = "team_credit"

    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    balance_s: Mapped[float] = mapped_column(Float)
    settled_at: Mapped[datetime]
    updated_at: Mapped[datetime]
