"""schedule_changes: when each user's or department's windows last changed

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedule_changes",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "subject", name=op.f("pk_schedule_changes")),
    )
    # Until now the newest window of a subject told when its rules came into
    # force; removals left no trace, so that is the best there is to start from.
    op.execute(
        "INSERT INTO schedule_changes (scope, subject, changed_at) "
        "SELECT scope, subject, max(created_at) FROM schedules GROUP BY scope, subject"
    )


def downgrade() -> None:
    op.drop_table("schedule_changes")
