"""The broker's tables (SQLAlchemy 2 declarative models).

These are storage records, not domain objects: services read them and hand plain
dataclasses to the pure domain functions. Every schema change here needs an
Alembic migration in `broker/migrations/versions/`; `tests/integration/
test_migrations.py` fails when the two drift apart.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from broker.store.types import BigIntPK, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Sessions in these states hold their desktop; "ended" frees it.
OPEN_SESSION = text("state <> 'ended'")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


def table(model: type[Base]) -> Table:
    """A model's Core table, for prebuilt statements on hot paths."""
    return cast(Table, model.__table__)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    department: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(8), default="staff")
    work_mode: Mapped[str] = mapped_column(String(8), default="home")
    priority_class: Mapped[str | None] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(64))
    auth_source: Mapped[str] = mapped_column(String(8), default="local")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # AES-GCM ciphertext (see broker.security.crypto); never the plain secret.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    # Highest TOTP time step ever accepted; only ever rises (replay rule).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime]
    last_login_at: Mapped[dt.datetime | None]


class LoginFailure(Base):
    """Failed logins for a name without a local account (unknown, or a directory
    user who never logged in), so that such names lock like accounts do."""

    __tablename__ = "login_failures"

    # Keyed hash of the normalised name: a mistyped name can hold a password.
    name_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[dt.datetime | None]
    last_failure_at: Mapped[dt.datetime] = mapped_column(index=True)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Keyed hash (HMAC with the broker key) so a database dump alone cannot be brute-forced.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[dt.datetime | None]


class Enrolment(Base):
    """A self-service TOTP enrolment in progress, opened by a right password."""

    __tablename__ = "enrolments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    # Wrong confirmation codes so far; the enrolment dies after a few.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class Pool(Base):
    __tablename__ = "pools"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[str] = mapped_column(String(8))
    max_sessions: Mapped[int] = mapped_column(Integer)
    field: Mapped[bool] = mapped_column(Boolean, default=False)
    # Share of usable capacity kept for priority staff (0 = no reserve).
    priority_reserve: Mapped[float] = mapped_column(Float, default=0.0)
    # Free desktops kept powered on; None: the broker does not manage power.
    spare_desktops: Mapped[int | None] = mapped_column(Integer)
    # Lifecycle limits in seconds; None: no limit.
    disconnect_timeout_s: Mapped[int | None] = mapped_column(Integer)
    max_session_s: Mapped[int | None] = mapped_column(Integer)
    idle_timeout_s: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime]


class PoolEntitlement(Base):
    """Who may use a pool: a department or a single user. No rows: everybody."""

    __tablename__ = "pool_entitlements"
    __table_args__ = (UniqueConstraint("pool_id", "kind", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(64))


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    agent_version: Mapped[str | None] = mapped_column(String(64))
    last_report_at: Mapped[dt.datetime | None]
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    # The latest report's metrics, as the agent sent them (agent.protocol).
    metrics: Mapped[dict[str, Any] | None]
    # Digest of the last reported desktop inventory: an unchanged inventory (the
    # usual case) costs no desktop queries at all.
    inventory_hash: Mapped[str | None] = mapped_column(String(64))
    # Power actions queued and not yet acknowledged; 0 spares a query per report.
    pending_actions: Mapped[int] = mapped_column(Integer, default=0)
    # When the health job found the host silent; cleared by its next report.
    down_since: Mapped[dt.datetime | None]
    # The figures placement and /metrics need, copied out of `metrics` at each
    # report: reading a few columns of 2,000 hosts is cheap, decoding 2,000 JSON
    # documents per scrape is not.
    cpu_ratio: Mapped[float | None] = mapped_column(Float)
    cpus: Mapped[int | None] = mapped_column(Integer)
    load1: Mapped[float | None] = mapped_column(Float)
    memory_total: Mapped[int | None] = mapped_column(BigInteger)
    memory_available: Mapped[int | None] = mapped_column(BigInteger)
    pressure_cpu: Mapped[float | None] = mapped_column(Float)
    pressure_memory: Mapped[float | None] = mapped_column(Float)
    pressure_io: Mapped[float | None] = mapped_column(Float)
    probes_total: Mapped[int | None] = mapped_column(BigInteger)
    probe_timeouts_total: Mapped[int | None] = mapped_column(BigInteger)
    probe_latency_s: Mapped[float | None] = mapped_column(Float)
    session_capacity: Mapped[int | None] = mapped_column(Integer)
    desktop_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime]


class Desktop(Base):
    __tablename__ = "desktops"
    __table_args__ = (
        UniqueConstraint("host_id", "name"),
        # Desktops per pool, host and power state, read by every scrape.
        Index("ix_desktops_stats", "pool_id", "host_id", "power_state", "missing"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    pool_id: Mapped[int | None] = mapped_column(
        ForeignKey("pools.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    power_state: Mapped[str] = mapped_column(String(16), default="unknown")
    address: Mapped[str | None] = mapped_column(String(64))
    port: Mapped[int | None] = mapped_column(Integer)
    probe_ok: Mapped[bool | None] = mapped_column(Boolean)
    probe_latency_s: Mapped[float | None] = mapped_column(Float)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)
    # Since when its host's reports no longer list it: its sessions end after a
    # grace (broker.sessions.lifecycle).
    missing_since: Mapped[dt.datetime | None]
    # Persistent pools: the user who owns this desktop.
    assigned_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    needs_reset: Mapped[bool] = mapped_column(Boolean, default=False)
    # Client connections on the console the agent sees (None: it cannot see them).
    connections: Mapped[int | None] = mapped_column(Integer)
    # Since when the desktop has been free and running (spare desktop management).
    idle_since: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class HostAction(Base):
    """A power action for a desktop, delivered with every report response until
    the agent reports its result (at least once; the agent is idempotent by id)."""

    __tablename__ = "host_actions"
    __table_args__ = (Index("ix_host_actions_open", "host_id", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    desktop_id: Mapped[int | None] = mapped_column(
        ForeignKey("desktops.id", ondelete="SET NULL"), index=True
    )
    desktop_name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]


class Session(Base):
    """A user's use of a desktop: pending → active ⇄ disconnected → ended."""

    __tablename__ = "sessions"
    __table_args__ = (
        # The two promises of assignment, kept by the database itself.
        Index(
            "uq_sessions_open_desktop",
            "desktop_id",
            unique=True,
            sqlite_where=OPEN_SESSION,
            postgresql_where=OPEN_SESSION,
        ),
        Index(
            "uq_sessions_open_user_pool",
            "user_id",
            "pool_id",
            unique=True,
            sqlite_where=OPEN_SESSION,
            postgresql_where=OPEN_SESSION,
        ),
        Index("ix_sessions_state", "state"),
        Index("ix_sessions_desktop", "desktop_id"),
        # Open sessions only, with what the counts of scrapes and placements group
        # by: those read the index, never the (growing) history of ended sessions.
        Index(
            "ix_sessions_open_stats",
            "pool_id",
            "host_id",
            "state",
            "work_mode",
            "created_at",
            sqlite_where=OPEN_SESSION,
            postgresql_where=OPEN_SESSION,
        ),
        # With the user: the cap and its gauge count people (distinct users),
        # which the index answers alone, without reading the session rows.
        Index(
            "ix_sessions_open_department",
            "work_mode",
            "department",
            "user_id",
            sqlite_where=OPEN_SESSION,
            postgresql_where=OPEN_SESSION,
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    desktop_id: Mapped[int | None] = mapped_column(ForeignKey("desktops.id", ondelete="SET NULL"))
    # The desktop's host, copied at assignment (a desktop never changes host), so
    # per-host counts need no join.
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id", ondelete="SET NULL"))
    # The user's department when the session started: the department cap was
    # decided on it, and counting home work per department needs no join.
    department: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    work_mode: Mapped[str] = mapped_column(String(8))
    end_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime]
    activated_at: Mapped[dt.datetime | None]
    disconnected_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    last_activity_at: Mapped[dt.datetime | None]


# Open sessions, for queries. 'ended' is written into the SQL text, not bound as
# a parameter: only then can a planner prove that the partial indexes above
# (WHERE state <> 'ended') serve the query. A parameter is "any value" to
# SQLite's planner and to PostgreSQL's generic plan of a prepared statement
# (used after five executions), which then scan every session ever held.
SESSION_OPEN = table(Session).c.state != literal_column("'ended'")

# The staff a department's share cap is a share of (broker.policy.quota): the
# enabled accounts whose work mode is home. The cap keeps office presence, and
# field workers (never in the office) and locked accounts (never at work)
# would only raise it.
CAP_STAFF = and_(
    table(User).c.disabled.is_(False), table(User).c.work_mode == literal_column("'home'")
)


class Ticket(Base):
    """A one-time secret that opens one tunnel for one session (stored hashed)."""

    __tablename__ = "tickets"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[dt.datetime | None]


class GatewayTunnel(Base):
    """An open SSH tunnel (one channel), a row while it is open.

    The rows of a session are its open tunnels on every replica: the last one
    to go makes the session disconnected. Each replica refreshes `seen_at` of
    its own rows; rows of a replica that died go stale and are cleaned up by the
    lifecycle job (broker.gateway.store).
    """

    __tablename__ = "gateway_tunnels"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    replica: Mapped[str] = mapped_column(String(32), index=True)
    destination: Mapped[str] = mapped_column(String(80))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[dt.datetime]
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class DepartmentPolicy(Base):
    """A department's cap on simultaneous home work: a number or a share of staff."""

    __tablename__ = "department_policies"

    department: Mapped[str] = mapped_column(String(64), primary_key=True)
    remote_cap: Mapped[int | None] = mapped_column(Integer)
    remote_share: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[dt.datetime]


class Schedule(Base):
    """One telework window of a user or a department (local time)."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_subject", "scope", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # user | department
    subject: Mapped[str] = mapped_column(String(64))
    days: Mapped[str] = mapped_column(String(32))  # "mon,wed"
    start: Mapped[str] = mapped_column(String(5))  # "07:00"
    end: Mapped[str] = mapped_column(String(5))
    created_at: Mapped[dt.datetime]


class ScheduleChange(Base):
    """When a user's or a department's telework windows last changed (added or
    removed). A session that a change puts outside its windows gets the grace
    from then on (broker.policy.schedule.in_force_since); a removed window
    leaves no row of its own to tell when."""

    __tablename__ = "schedule_changes"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    changed_at: Mapped[dt.datetime]


class PriorityClass(Base):
    """A task area whose staff are served from the priority reserve."""

    __tablename__ = "priority_classes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime]


class WebSession(Base):
    """A logged-in browser or API client. Only the hash of the cookie value is kept."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        # The user filter matches names in any case (names as typed at login keep
        # theirs); with the id, the newest of one name are read in index order.
        Index("ix_audit_events_username_lower", text("lower(username)"), "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    event: Mapped[str] = mapped_column(String(48), index=True)
    result: Mapped[str | None] = mapped_column(String(48))
    # The user name as typed (escaped), or the user acted upon.
    username: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str | None] = mapped_column(String(128))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None]
