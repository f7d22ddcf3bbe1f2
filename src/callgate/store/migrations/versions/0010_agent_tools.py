"""agents' tools, and tool calls in the transcript

Revision ID: 0010_agent_tools
Revises: 0009
Create Date: 2027-01-20
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_agent_tools"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def upgrade() -> None:
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tools", _json(), server_default="[]", nullable=False))
    with op.batch_alter_table("transcript_turn", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tool", _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transcript_turn", schema=None) as batch_op:
        batch_op.drop_column("tool")
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.drop_column("tools")
