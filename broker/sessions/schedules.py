"""Open home sessions outside their telework windows, and for how long.

The lifecycle job ends those past the grace (broker.sessions.lifecycle); the
policy store tells an administrator who adds or removes a window how many
sessions are outside now (broker.policy.store). A change of the windows counts
from when it was made (schedule_changes; broker.policy.schedule.in_force_since).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

from sqlalchemy import select

from broker.domain import WorkMode
from broker.policy import schedule
from broker.store.db import Executor
from broker.store.tables import SESSION_OPEN, Schedule, ScheduleChange, Session, User, table

_sessions = table(Session)
_users = table(User)
_schedules = table(Schedule)
_changes = table(ScheduleChange)

_OPEN_HOME = (
    select(_sessions.c.id, _users.c.name, _users.c.department)
    .join(_users, _users.c.id == _sessions.c.user_id)
    .where(SESSION_OPEN, _sessions.c.work_mode == WorkMode.HOME.value)
)
_WINDOWS = select(
    _schedules.c.scope,
    _schedules.c.subject,
    _schedules.c.days,
    _schedules.c.start,
    _schedules.c.end,
)
_CHANGES = select(_changes.c.scope, _changes.c.subject, _changes.c.changed_at)


async def outside_windows(
    conn: Executor, now: dt.datetime, zone: ZoneInfo
) -> dict[str, dt.timedelta]:
    """Session id -> how long home work has not been allowed, for each open home
    session outside every window that governs it (schedule.closed_for)."""
    rows = (await conn.execute(_OPEN_HOME)).all()
    if not rows:
        return {}
    windows: dict[tuple[str, str], list[schedule.Window]] = defaultdict(list)
    for scope, subject, days, start, end in (await conn.execute(_WINDOWS)).all():
        windows[(scope, subject)].append(schedule.Window.stored(days, start, end))
    if not windows:
        return {}
    changed = {(scope, subject): at for scope, subject, at in (await conn.execute(_CHANGES)).all()}
    local = now.astimezone(zone)
    outside: dict[str, dt.timedelta] = {}
    for session_id, name, department in rows:
        mine = windows.get(("user", name), [])
        governing = schedule.applicable(mine, windows.get(("department", department), []))
        if governing is None:
            continue
        in_force = schedule.in_force_since(
            bool(mine), changed.get(("user", name)), changed.get(("department", department))
        )
        closed = schedule.closed_for(governing, local, in_force)
        if closed is not None:
            outside[session_id] = closed
    return outside
