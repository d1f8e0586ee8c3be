"""agent reports: inventory digest, action queue, host health

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_actions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("desktop_id", sa.Integer(), nullable=True),
        sa.Column("desktop_name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["desktop_id"],
            ["desktops.id"],
            name=op.f("fk_host_actions_desktop_id_desktops"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_host_actions_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host_actions")),
    )
    with op.batch_alter_table("host_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_host_actions_desktop_id"), ["desktop_id"], unique=False
        )
        batch_op.create_index("ix_host_actions_open", ["host_id", "state"], unique=False)

    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inventory_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("pending_actions", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("down_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_hosts_token_hash"), ["token_hash"])


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_hosts_token_hash"), type_="unique")
        batch_op.drop_column("down_since")
        batch_op.drop_column("pending_actions")
        batch_op.drop_column("inventory_hash")

    with op.batch_alter_table("host_actions", schema=None) as batch_op:
        batch_op.drop_index("ix_host_actions_open")
        batch_op.drop_index(batch_op.f("ix_host_actions_desktop_id"))

    op.drop_table("host_actions")
