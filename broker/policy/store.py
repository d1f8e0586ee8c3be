"""Storing the policies: department remote caps, telework schedules, priority classes.

Administrators set them through the CLI (`vdi-broker policy ...`) and the admin
API; placement reads them (broker.sessions.snapshot.load_policy). Every change
checks its input before it touches the store, happens in one transaction and
leaves a `policy_changed` audit event whose `result` says what changed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from broker.audit import log as audit
from broker.errors import Conflict, InvalidInput, NotFound
from broker.names import check_label, check_user_name
from broker.policy.quota import DepartmentCap
from broker.policy.schedule import format_days, format_time, parse_days, parse_time
from broker.runtime import Runtime
from broker.sessions import schedules
from broker.store.tables import (
    CAP_STAFF,
    DepartmentPolicy,
    PriorityClass,
    Schedule,
    ScheduleChange,
    User,
    table,
)
from broker.store.types import MAX_ID
from broker.users import service as users

MAX_CAP = 100_000
SCOPES = ("user", "department")
EVENT = "policy_changed"

_changes = table(ScheduleChange)


# -- checking input (pure) ------------------------------------------------------------


def check_cap(max_sessions: int | None, share: float | None) -> tuple[int | None, float | None]:
    """A cap is a number of home sessions or a share of the staff, never both;
    neither means no cap."""
    if max_sessions is not None and share is not None:
        raise InvalidInput(
            "Give a department cap either as a number of sessions or as a share of the "
            "staff, not both.",
            code="invalid_cap",
        )
    if max_sessions is not None and (
        isinstance(max_sessions, bool)
        or not isinstance(max_sessions, int)
        or not 0 <= max_sessions <= MAX_CAP
    ):
        raise InvalidInput(
            f"A department cap is a number of sessions from 0 to {MAX_CAP}.", code="invalid_cap"
        )
    if share is not None:
        # `not 0 < share <= 1` is also true for NaN.
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise InvalidInput(
                "A department share is a fraction of its staff above 0 and at most 1 (0.5 = half).",
                code="invalid_cap",
            )
        share = float(share)
    return max_sessions, share


@dataclass(frozen=True)
class ScheduleSpec:
    """A telework window as it is stored: normalised days and HH:MM times."""

    scope: str
    subject: str
    days: str
    start: str
    end: str


def check_schedule(scope: str, subject: str, days: str, start: str, end: str) -> ScheduleSpec:
    if scope not in SCOPES:
        raise InvalidInput("A schedule is for a 'user' or a 'department'.", code="invalid_scope")
    subject = check_user_name(subject) if scope == "user" else check_label(subject, "department")
    try:
        window_days = parse_days(days)
        window_start, window_end = parse_time(start), parse_time(end)
        if start == "24:00":
            # The end of its day, stored as 00:00: as a start, the same day's beginning.
            raise ValueError("24:00 ends a window; one from midnight starts at 00:00")
    except ValueError as exc:
        raise InvalidInput(f"Invalid schedule: {exc}.", code="invalid_schedule") from exc
    return ScheduleSpec(
        scope, subject, format_days(window_days), format_time(window_start), format_time(window_end)
    )


async def _changed(
    s: AsyncSession, now: dt.datetime, actor: str, result: str, detail: dict[str, Any]
) -> None:
    """The audit event of every policy change; `result` says which."""
    await audit.record(s, now, EVENT, result=result, actor=actor, detail=detail)


# -- department caps -------------------------------------------------------------------------


async def set_department_cap(
    rt: Runtime,
    department: str,
    *,
    max_sessions: int | None,
    share: float | None,
    actor: str,
) -> dict[str, Any] | None:
    """Set (or with neither value, remove) a department's cap on home sessions.
    Returns the cap as listed, or None when the department has none now."""
    department = check_label(department, "department")
    max_sessions, share = check_cap(max_sessions, share)
    remove = max_sessions is None and share is None
    now = rt.clock.now()
    detail = {"department": department, "remote_cap": max_sessions, "remote_share": share}
    try:
        async with rt.db.write() as s:
            row = await s.get(DepartmentPolicy, department)
            if remove:
                if row is None:
                    return None  # no cap, nothing to remove
                await s.delete(row)
            else:
                if row is None:
                    row = DepartmentPolicy(department=department)
                    s.add(row)
                row.remote_cap, row.remote_share, row.updated_at = max_sessions, share, now
                await s.flush()
            result = "department_cap_removed" if remove else "department_cap_set"
            await _changed(s, now, actor, result, detail)
            if remove:
                return None
            staff = await _staff(s)
            return _cap_dict(row, staff.get(department, 0))
    except IntegrityError as exc:  # two first caps for one department at once
        raise Conflict(
            f"The cap of {department} was changed at the same time; try again.", code="conflict"
        ) from exc


async def list_department_caps(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.db.read() as s:
        return await _caps(s)


async def _staff(s: AsyncSession) -> dict[str, int]:
    """Per department, the staff a share cap is a share of (CAP_STAFF)."""
    rows = await s.execute(
        select(User.department, func.count()).where(CAP_STAFF).group_by(User.department)
    )
    return {department: int(n) for department, n in rows.all()}


async def _caps(s: AsyncSession) -> list[dict[str, Any]]:
    rows = (await s.scalars(select(DepartmentPolicy).order_by(DepartmentPolicy.department))).all()
    staff = await _staff(s)
    return [_cap_dict(r, staff.get(r.department, 0)) for r in rows]


def _cap_dict(row: DepartmentPolicy, staff: int) -> dict[str, Any]:
    cap = DepartmentCap(row.department, row.remote_cap, row.remote_share)
    return {
        "department": row.department,
        "remote_cap": row.remote_cap,
        "remote_share": row.remote_share,
        "staff": staff,
        "limit": cap.limit(staff),  # home sessions at once, now
        "updated_at": row.updated_at.isoformat(),
    }


# -- schedules ---------------------------------------------------------------------------------


async def add_schedule(
    rt: Runtime, scope: str, subject: str, days: str, start: str, end: str, actor: str
) -> int:
    """Add a telework window; returns its id. A user's windows replace their
    department's (broker.policy.schedule)."""
    spec = check_schedule(scope, subject, days, start, end)
    now = rt.clock.now()
    async with rt.db.write() as s:
        if spec.scope == "user" and await users.find(s, spec.subject) is None:
            raise InvalidInput(f"There is no user {spec.subject!r}.", code="unknown_user")
        same = await s.scalar(
            select(Schedule.id).where(
                Schedule.scope == spec.scope,
                Schedule.subject == spec.subject,
                Schedule.days == spec.days,
                Schedule.start == spec.start,
                Schedule.end == spec.end,
            )
        )
        if same is not None:
            raise Conflict(f"This window exists already (schedule {same}).", code="exists")
        row = Schedule(**asdict(spec), created_at=now)
        s.add(row)
        await s.flush()
        await _windows_changed(rt, s, spec.scope, spec.subject, now)
        await _changed(s, now, actor, "schedule_added", {"schedule_id": row.id, **asdict(spec)})
        return row.id


async def _windows_changed(
    rt: Runtime, s: AsyncSession, scope: str, subject: str, now: dt.datetime
) -> None:
    """Note when the subject's windows changed: sessions a change puts outside
    their windows get the grace from now (schedule.in_force_since)."""
    await s.execute(
        rt.db.upsert(_changes)
        .values(scope=scope, subject=subject, changed_at=now)
        .on_conflict_do_update(
            index_elements=[_changes.c.scope, _changes.c.subject], set_={"changed_at": now}
        )
    )


async def sessions_outside_windows(rt: Runtime) -> int:
    """How many open home sessions are outside their telework windows now: after
    a window is added or removed, those it leaves outside end `schedule_grace_s`
    later (broker.sessions.lifecycle)."""
    async with rt.db.read() as s:
        outside = await schedules.outside_windows(s, rt.clock.now(), ZoneInfo(rt.settings.timezone))
    return len(outside)


async def get_schedule(rt: Runtime, schedule_id: int) -> dict[str, Any]:
    async with rt.db.read() as s:
        return _schedule_dict(await _schedule(s, schedule_id))


async def remove_schedule(rt: Runtime, schedule_id: int, actor: str) -> dict[str, Any]:
    """Remove a window; returns it as it was."""
    now = rt.clock.now()
    async with rt.db.write() as s:
        row = await _schedule(s, schedule_id)
        removed = _schedule_dict(row)
        await s.delete(row)
        await _windows_changed(rt, s, row.scope, row.subject, now)
        await _changed(
            s, now, actor, "schedule_removed", {"schedule_id": row.id, **asdict(_spec_of(row))}
        )
    return removed


async def list_schedules(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.db.read() as s:
        return await _schedules(s)


async def _schedule(s: AsyncSession, schedule_id: int) -> Schedule:
    row = await s.get(Schedule, schedule_id) if 0 < schedule_id <= MAX_ID else None
    if row is None:
        raise NotFound(f"There is no schedule {schedule_id}.", code="unknown_schedule")
    return row


async def _schedules(s: AsyncSession) -> list[dict[str, Any]]:
    rows = await s.scalars(select(Schedule).order_by(Schedule.scope, Schedule.subject, Schedule.id))
    return [_schedule_dict(r) for r in rows.all()]


def _spec_of(row: Schedule) -> ScheduleSpec:
    return ScheduleSpec(row.scope, row.subject, row.days, row.start, row.end)


def _schedule_dict(row: Schedule) -> dict[str, Any]:
    return {"id": row.id, **asdict(_spec_of(row)), "created_at": row.created_at.isoformat()}


# -- priority classes ------------------------------------------------------------------------


async def add_priority_class(rt: Runtime, name: str, actor: str) -> bool:
    """Make a task area a priority class; False if it is one already (no change)."""
    name = check_label(name, "priority class")
    now = rt.clock.now()
    try:
        async with rt.db.write() as s:
            if await s.get(PriorityClass, name) is not None:
                return False
            s.add(PriorityClass(name=name, created_at=now))
            await s.flush()
            await _changed(s, now, actor, "priority_class_added", {"priority_class": name})
    except IntegrityError:  # added at the same moment by someone else
        return False
    return True


async def remove_priority_class(rt: Runtime, name: str, actor: str) -> None:
    """Its staff keep the class name on their accounts but are no longer served
    from the reserve."""
    name = name.strip()
    now = rt.clock.now()
    async with rt.db.write() as s:
        row = await s.get(PriorityClass, name)
        if row is None:
            raise NotFound(f"There is no priority class {name!r}.", code="unknown_priority_class")
        await s.delete(row)
        await _changed(s, now, actor, "priority_class_removed", {"priority_class": name})


async def list_priority_classes(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.db.read() as s:
        return await _classes(s)


async def _classes(s: AsyncSession) -> list[dict[str, Any]]:
    rows = (await s.scalars(select(PriorityClass).order_by(PriorityClass.name))).all()
    members = dict(
        (
            await s.execute(
                select(User.priority_class, func.count())
                .where(User.priority_class.is_not(None))
                .group_by(User.priority_class)
            )
        ).all()
    )
    return [
        {
            "name": r.name,
            "users": int(members.get(r.name, 0)),
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]


# -- all at once -----------------------------------------------------------------------------------


async def overview(rt: Runtime) -> dict[str, list[dict[str, Any]]]:
    """Every policy by kind, as the admin API shows them (`vdi-broker policy list
    --json` makes one list of it)."""
    async with rt.db.read() as s:
        return {
            "departments": await _caps(s),
            "schedules": await _schedules(s),
            "priority_classes": await _classes(s),
        }
