"""Open home sessions outside their telework windows, and for how long.

The lifecycle job ends those past the grace (broker.sessions.lifecycle); the
policy store tells an administrator who adds a window how many sessions it
leaves outside (broker.policy.store). Windows are read with the moment they
were created: a new rule's grace counts from then (broker.policy.schedule).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import select

from broker.domain import WorkMode
from broker.policy import schedule
from broker.store.db import Executor
from broker.store.tables import SESSION_OPEN, Schedule, Session, User, table

_sessions = table(Session)
_users = table(User)
_schedules = table(Schedule)

_OPEN_HOME = (
    select(_sessions.c.id, _users.c.name, _users.c.department)
    .join(_users, _users.c.id == _sessions.c.user_id)
    .where(SESSION_OPEN, _sessions.c.work_mode == WorkMode.HOME.value)
)


@dataclass
class _Rules:
    """The windows of one user or department, and when the newest was made."""

    windows: list[schedule.Window] = field(default_factory=list)
    in_force: dt.datetime | None = None


async def outside_windows(
    conn: Executor, now: dt.datetime, zone: ZoneInfo
) -> dict[str, dt.timedelta]:
    """Session id -> how long home work has not been allowed, for each open home
    session outside every window that governs it (schedule.closed_for)."""
    rows = (await conn.execute(_OPEN_HOME)).all()
    if not rows:
        return {}
    rules: dict[tuple[str, str], _Rules] = defaultdict(_Rules)
    for w in (await conn.execute(select(_schedules))).all():
        r = rules[(w.scope, w.subject)]
        r.windows.append(schedule.Window.stored(w.days, w.start, w.end))
        r.in_force = w.created_at if r.in_force is None else max(r.in_force, w.created_at)
    if not rules:
        return {}
    local = now.astimezone(zone)
    outside: dict[str, dt.timedelta] = {}
    for session_id, name, department in rows:
        # A user's own windows replace their department's (schedule.applicable);
        # the rules that govern came into force with the newest of them.
        governing = rules.get(("user", name)) or rules.get(("department", department))
        if governing is None:
            continue
        closed = schedule.closed_for(governing.windows, local, governing.in_force)
        if closed is not None:
            outside[session_id] = closed
    return outside
