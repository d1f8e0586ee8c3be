"""assignment: policies, tickets, pool lifecycle, host load columns

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "department_policies",
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("remote_cap", sa.Integer(), nullable=True),
        sa.Column("remote_share", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("department", name=op.f("pk_department_policies")),
    )
    op.create_table(
        "priority_classes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_priority_classes")),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("days", sa.String(length=32), nullable=False),
        sa.Column("start", sa.String(length=5), nullable=False),
        sa.Column("end", sa.String(length=5), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.create_index("ix_schedules_subject", ["scope", "subject"], unique=False)

    op.create_table(
        "tickets",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_tickets_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_tickets_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_tickets")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tickets_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_session_id"), ["session_id"], unique=False)

    with op.batch_alter_table("desktops", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connections", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("idle_since", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cpu_ratio", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("memory_total", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("memory_available", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("session_capacity", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("desktop_count", sa.Integer(), nullable=False, server_default="0")
        )

    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority_reserve", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("spare_desktops", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("disconnect_timeout_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_session_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("idle_timeout_s", sa.Integer(), nullable=True))

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index("ix_sessions_desktop", ["desktop_id"], unique=False)
        batch_op.create_index("ix_sessions_pool_state", ["pool_id", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_pool_state")
        batch_op.drop_index("ix_sessions_desktop")

    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.drop_column("idle_timeout_s")
        batch_op.drop_column("max_session_s")
        batch_op.drop_column("disconnect_timeout_s")
        batch_op.drop_column("spare_desktops")
        batch_op.drop_column("priority_reserve")

    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("desktop_count")
        batch_op.drop_column("session_capacity")
        batch_op.drop_column("memory_available")
        batch_op.drop_column("memory_total")
        batch_op.drop_column("cpu_ratio")

    with op.batch_alter_table("desktops", schema=None) as batch_op:
        batch_op.drop_column("idle_since")
        batch_op.drop_column("connections")

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_session_id"))
        batch_op.drop_index(batch_op.f("ix_tickets_expires_at"))

    op.drop_table("tickets")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index("ix_schedules_subject")

    op.drop_table("schedules")
    op.drop_table("priority_classes")
    op.drop_table("department_policies")
