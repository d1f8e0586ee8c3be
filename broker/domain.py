"""The domain words of DESIGN.md as enums, shared by storage, API, CLI and logic."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    STAFF = "staff"
    ADMIN = "admin"


class WorkMode(StrEnum):
    HOME = "home"
    FIELD = "field"


class PoolType(StrEnum):
    FLOATING = "floating"
    PERSISTENT = "persistent"


class Protocol(StrEnum):
    RDP = "rdp"
    VNC = "vnc"


class HostState(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"
    MAINTENANCE = "maintenance"


class SessionState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DISCONNECTED = "disconnected"
    ENDED = "ended"


OPEN_SESSION_STATES = (SessionState.PENDING, SessionState.ACTIVE, SessionState.DISCONNECTED)


class RefusalCode(StrEnum):
    CAPACITY_FULL = "capacity_full"
    LICENCE_LIMIT = "licence_limit"
    DEPARTMENT_QUOTA = "department_quota"
    OUTSIDE_SCHEDULE = "outside_schedule"
    NOT_ENTITLED = "not_entitled"
    HOST_UNAVAILABLE = "host_unavailable"


class LoginResult(StrEnum):
    SUCCESS = "success"
    INVALID_CREDENTIALS = "invalid_credentials"
    LOCKED = "locked"
    RATE_LIMITED = "rate_limited"
    REPLAY = "replay"
    ENROLLMENT_REQUIRED = "enrollment_required"
