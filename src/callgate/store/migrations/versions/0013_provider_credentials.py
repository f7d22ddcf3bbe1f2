"""provider credentials (sealed cloud vendor keys) and an agent's language

Revision ID: 0013_provider_credentials
Revises: 0012_users
Create Date: 2026-12-07

The credential's secret is a sealed column (``callgate.store.sealing``): plain text to the database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callgate.store.types

revision: str = "0013_provider_credentials"
down_revision: str | Sequence[str] | None = "0012_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_credential",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_provider_credential_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_credential")),
    )
    with op.batch_alter_table("provider_credential", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_provider_credential_team_id_created_at"), ["team_id", "created_at"]
        )
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.drop_column("language")
    with op.batch_alter_table("provider_credential", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_credential_team_id_created_at"))
    op.drop_table("provider_credential")
