"""node leases: which node holds each live call, so a dead node's calls are ended

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callgate.store.types

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node_lease",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("started_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_lease")),
    )
    op.create_index(op.f("ix_node_lease_expires_at"), "node_lease", ["expires_at"], unique=False)
    with op.batch_alter_table("call") as batch:
        batch.add_column(sa.Column("node_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call") as batch:
        batch.drop_column("node_id")
    op.drop_index(op.f("ix_node_lease_expires_at"), table_name="node_lease")
    op.drop_table("node_lease")
