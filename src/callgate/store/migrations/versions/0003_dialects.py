"""dialects: team call credits

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callgate.store.types

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "team_credit",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("balance_s", sa.Float(), nullable=False),
        sa.Column("settled_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_team_credit_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_credit")),
    )


def downgrade() -> None:
    op.drop_table("team_credit")
