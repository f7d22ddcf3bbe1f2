"""carriers (SIP trunks, Twilio accounts) and the carrier of a phone number

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

The carriers' secrets are sealed columns (``callgate.store.sealing``): plain strings to the database.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import callgate.store.types

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "carrier",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("outbound_password", sa.String(length=255), nullable=True),
        sa.Column("inbound_password", sa.String(length=255), nullable=True),
        sa.Column("auth_token", sa.String(length=255), nullable=True),
        sa.Column("created_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_carrier_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier")),
    )
    with op.batch_alter_table("carrier", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_carrier_team_id_created_at"), ["team_id", "created_at"])

    with op.batch_alter_table("phone_number", schema=None) as batch_op:
        batch_op.add_column(sa.Column("carrier_id", sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f("ix_phone_number_carrier_id"), ["carrier_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_phone_number_carrier_id_carrier"),
            "carrier",
            ["carrier_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("phone_number", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_phone_number_carrier_id_carrier"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_phone_number_carrier_id"))
        batch_op.drop_column("carrier_id")
    with op.batch_alter_table("carrier", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_carrier_team_id_created_at"))
    op.drop_table("carrier")
