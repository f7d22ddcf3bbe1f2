"""phone calls and Vocode agent objects

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import callgate.store.types

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "phone_call",
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("from_number", sa.String(length=32), nullable=False),
        sa.Column("to_number", sa.String(length=32), nullable=False),
        sa.Column("phone_number_id", sa.String(length=40), nullable=True),
        sa.Column("options", _json(), nullable=False),
        sa.Column("created_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call.id"], name=op.f("fk_phone_call_call_id_call"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["phone_number_id"],
            ["phone_number.id"],
            name=op.f("fk_phone_call_phone_number_id_phone_number"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_phone_call_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_phone_call")),
    )
    with op.batch_alter_table("phone_call", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phone_call_team_id"), ["team_id"], unique=False)

    op.create_table(
        "vocode_agent",
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("voice", _json(), nullable=False),
        sa.Column("actions", _json(), nullable=False),
        sa.Column("webhook", _json(), nullable=True),
        sa.Column("created_at", callgate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agent.id"], name=op.f("fk_vocode_agent_agent_id_agent"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_vocode_agent_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("agent_id", name=op.f("pk_vocode_agent")),
    )
    with op.batch_alter_table("vocode_agent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vocode_agent_team_id"), ["team_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vocode_agent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vocode_agent_team_id"))
    op.drop_table("vocode_agent")
    with op.batch_alter_table("phone_call", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phone_call_team_id"))
    op.drop_table("phone_call")
