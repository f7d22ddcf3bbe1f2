"""barge-in decisions on an agent's transcript turn

Revision ID: 0014_turn_barge_ins
Revises: 0013_provider_credentials
Create Date: 2026-12-06

Each time the caller's sound held the agent: resumed (noise, no words, a backchannel) or interrupted
(long speech, words, a typed message, a finished turn), with how long the agent was held.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014_turn_barge_ins"
down_revision: str | Sequence[str] | None = "0013_provider_credentials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def upgrade() -> None:
    with op.batch_alter_table("transcript_turn", schema=None) as batch_op:
        batch_op.add_column(sa.Column("barge_ins", _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transcript_turn", schema=None) as batch_op:
        batch_op.drop_column("barge_ins")
