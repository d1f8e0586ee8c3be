"""audit: the user filter matches names in any case

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The plain index served an exact match only; the filter now compares
    # lower(username), which the new index holds (the old one would only cost
    # every audit write).
    op.drop_index("ix_audit_events_username", table_name="audit_events")
    op.create_index(
        "ix_audit_events_username_lower", "audit_events", [sa.text("lower(username)"), "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_audit_events_username_lower", table_name="audit_events")
    op.create_index("ix_audit_events_username", "audit_events", ["username"])
