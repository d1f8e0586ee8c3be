"""sessions: the open-home-sessions index holds the user

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OPEN = sa.text("state <> 'ended'")


def _index(columns: list[str]) -> None:
    op.create_index(
        "ix_sessions_open_department",
        "sessions",
        columns,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def upgrade() -> None:
    # The department cap and vdi_department_remote_sessions count distinct
    # users now; without user_id here every scrape read the session rows.
    op.drop_index("ix_sessions_open_department", table_name="sessions")
    _index(["work_mode", "department", "user_id"])


def downgrade() -> None:
    op.drop_index("ix_sessions_open_department", table_name="sessions")
    _index(["work_mode", "department"])
