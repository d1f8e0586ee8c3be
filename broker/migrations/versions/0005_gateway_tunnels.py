"""gateway: open tunnels, one row per channel and replica

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_tunnels",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("replica", sa.String(length=32), nullable=False),
        sa.Column("destination", sa.String(length=80), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_gateway_tunnels_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_tunnels")),
    )
    with op.batch_alter_table("gateway_tunnels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gateway_tunnels_replica"), ["replica"], unique=False)
        batch_op.create_index(batch_op.f("ix_gateway_tunnels_seen_at"), ["seen_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_gateway_tunnels_session_id"), ["session_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gateway_tunnels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_tunnels_session_id"))
        batch_op.drop_index(batch_op.f("ix_gateway_tunnels_seen_at"))
        batch_op.drop_index(batch_op.f("ix_gateway_tunnels_replica"))
    op.drop_table("gateway_tunnels")
