"""scale: host figures in columns, session host, stats indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("desktops", schema=None) as batch_op:
        batch_op.create_index(
            "ix_desktops_stats", ["pool_id", "host_id", "power_state", "missing"], unique=False
        )

    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cpus", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("load1", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("pressure_cpu", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("pressure_memory", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("pressure_io", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("probes_total", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("probe_timeouts_total", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("probe_latency_s", sa.Float(), nullable=True))

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("department", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_sessions_open_department",
            ["work_mode", "department"],
            unique=False,
            sqlite_where=sa.text("state <> 'ended'"),
            postgresql_where=sa.text("state <> 'ended'"),
        )
        batch_op.drop_index(batch_op.f("ix_sessions_pool_state"))
        batch_op.create_index(
            "ix_sessions_open_stats",
            ["pool_id", "host_id", "state", "work_mode", "created_at"],
            unique=False,
            sqlite_where=sa.text("state <> 'ended'"),
            postgresql_where=sa.text("state <> 'ended'"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_sessions_host_id_hosts"),
            "hosts",
            ["host_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.execute(
        "UPDATE sessions SET host_id = "
        "(SELECT desktops.host_id FROM desktops WHERE desktops.id = sessions.desktop_id)"
    )
    op.execute(
        "UPDATE sessions SET department = "
        "(SELECT users.department FROM users WHERE users.id = sessions.user_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_open_department")
        batch_op.drop_column("department")
        batch_op.drop_constraint(batch_op.f("fk_sessions_host_id_hosts"), type_="foreignkey")
        batch_op.drop_index(
            "ix_sessions_open_stats",
            sqlite_where=sa.text("state <> 'ended'"),
            postgresql_where=sa.text("state <> 'ended'"),
        )
        batch_op.create_index(
            batch_op.f("ix_sessions_pool_state"), ["pool_id", "state"], unique=False
        )
        batch_op.drop_column("host_id")

    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("probe_latency_s")
        batch_op.drop_column("probe_timeouts_total")
        batch_op.drop_column("probes_total")
        batch_op.drop_column("pressure_io")
        batch_op.drop_column("pressure_memory")
        batch_op.drop_column("pressure_cpu")
        batch_op.drop_column("load1")
        batch_op.drop_column("cpus")

    with op.batch_alter_table("desktops", schema=None) as batch_op:
        batch_op.drop_index("ix_desktops_stats")
