"""room for sealed (encrypted) webhook signing secrets

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22

Secrets stored before this revision stay readable as they are; the server seals them at its next start
(see ``callgate.store.sealing``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = {
    "webhook_endpoint": (("secret", False), ("previous_secret", True)),
    "webhook_signing_secret": (("secret", False), ("previous_secret", True)),
}


def _resize(old: int, new: int) -> None:
    for table, columns in _COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, nullable in columns:
                batch_op.alter_column(
                    name,
                    existing_type=sa.String(length=old),
                    type_=sa.String(length=new),
                    existing_nullable=nullable,
                )


def upgrade() -> None:
    _resize(100, 255)


def downgrade() -> None:
    _resize(255, 100)
