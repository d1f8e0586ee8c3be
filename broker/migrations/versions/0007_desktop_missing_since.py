"""desktops: since when a desktop is missing from its host's reports

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("desktops", schema=None) as batch_op:
        batch_op.add_column(sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True))
    # Desktops missing already: their last change is the best guess of when they
    # went, as nothing else changes a missing desktop's row.
    op.execute("UPDATE desktops SET missing_since = updated_at WHERE missing")


def downgrade() -> None:
    with op.batch_alter_table("desktops", schema=None) as batch_op:
        batch_op.drop_column("missing_since")
