"""Managing pools (CLI and admin API): add, change settings, entitle and revoke,
assign and unassign persistent desktops, list.

Changes that touch who holds which desktop (assign, unassign) lock the pool row
on PostgreSQL, as assignment does (broker.sessions.service), so an administrator
and a logon never hand out one desktop twice; SQLite's write lock does the same.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, TypeGuard

from sqlalchemy import case, exists, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from broker.audit import log as audit
from broker.domain import PoolType, Protocol
from broker.errors import Conflict, InvalidInput, NotFound
from broker.hosts import actions
from broker.hosts.store import FORGET_INVENTORIES
from broker.names import check_label, check_user_name, normalise_user_name, same_but_case
from broker.runtime import Runtime
from broker.store.tables import SESSION_OPEN, Desktop, Host, Pool, PoolEntitlement, Session, User
from broker.users import service as users

MAX_LICENCES = 100_000


@dataclass(frozen=True)
class NewPool:
    name: str
    type: PoolType
    protocol: Protocol
    max_sessions: int
    departments: list[str] = field(default_factory=list)
    field: bool = False


def validate(new: NewPool) -> NewPool:
    return NewPool(
        name=check_label(new.name, "pool"),
        type=PoolType(new.type),
        protocol=Protocol(new.protocol),
        max_sessions=_licences(new.max_sessions),
        departments=sorted({check_label(d, "department") for d in new.departments}),
        field=new.field,
    )


async def add(rt: Runtime, new: NewPool, actor: str) -> Pool:
    new = validate(new)
    now = rt.clock.now()
    pool = Pool(
        name=new.name,
        type=new.type.value,
        protocol=new.protocol.value,
        max_sessions=new.max_sessions,
        field=new.field,
        created_at=now,
    )
    try:
        async with rt.db.write() as s:
            taken = same_but_case(new.name, await s.scalars(select(Pool.name)))
            if taken is not None:
                raise Conflict(f"A pool named {taken!r} exists already.", code="exists")
            s.add(pool)
            await s.flush()
            s.add_all(
                PoolEntitlement(pool_id=pool.id, kind="department", value=d)
                for d in new.departments
            )
            # Agents may have reported desktops for this pool before it existed.
            await s.execute(FORGET_INVENTORIES)
            await audit.record(
                s,
                now,
                "pool_added",
                actor=actor,
                detail={
                    "pool": new.name,
                    "max_sessions": new.max_sessions,
                    "departments": new.departments,
                },
            )
    except IntegrityError as exc:
        raise Conflict(f"A pool named {new.name!r} exists already.", code="exists") from exc
    return pool


# -- settings ------------------------------------------------------------------------------

MAX_SPARE = 10_000
MIN_LIMIT_S = 60
MAX_LIMIT_S = 366 * 24 * 3600
LIMITS = {
    "disconnect_timeout_s": "The disconnect timeout",
    "max_session_s": "The maximum session time",
    "idle_timeout_s": "The idle timeout",
}


class Unset(Enum):
    """A setting left out of a change (None has a meaning of its own: no limit)."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True)
class PoolChanges:
    """Pool settings to change; what is UNSET stays as it is."""

    max_sessions: int | Unset = UNSET
    priority_reserve: float | Unset = UNSET
    spare_desktops: int | Unset | None = UNSET  # None: the broker does not manage power
    disconnect_timeout_s: int | Unset | None = UNSET  # None: no limit
    max_session_s: int | Unset | None = UNSET
    idle_timeout_s: int | Unset | None = UNSET
    field: bool | Unset = UNSET

    def given(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: value for name, value in values.items() if value is not UNSET}


def _whole(value: object, low: int, high: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _licences(value: object) -> int:
    if not _whole(value, 0, MAX_LICENCES):
        raise InvalidInput(
            f"max-sessions is a licence count from 0 to {MAX_LICENCES}.", code="invalid_limit"
        )
    return value


def _check_setting(name: str, value: Any) -> Any:
    if name == "max_sessions":
        return _licences(value)
    if name == "priority_reserve":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not 0 <= value < 1:  # NaN fails too
            raise InvalidInput(
                "The priority reserve is a share of the pool from 0 (none) to below 1 "
                "(0.1 = a tenth).",
                code="invalid_limit",
            )
        # + 0.0 makes -0.0 (a typed "-0") the 0 it means, not "-0 %" on every page.
        return float(value) + 0.0
    if name == "field":
        if not isinstance(value, bool):
            raise InvalidInput("The field flag is true or false.", code="invalid_limit")
        return value
    if value is None:
        return None
    if name == "spare_desktops":
        if not _whole(value, 0, MAX_SPARE):
            raise InvalidInput(
                f"Spare desktops are a number from 0 to {MAX_SPARE}, or none (the broker "
                "does not manage power).",
                code="invalid_limit",
            )
        return value
    if not _whole(value, MIN_LIMIT_S, MAX_LIMIT_S):
        raise InvalidInput(
            f"{LIMITS[name]} is a number of seconds from {MIN_LIMIT_S} to {MAX_LIMIT_S}, "
            "or none (no limit).",
            code="invalid_limit",
        )
    return value


def validate_changes(changes: PoolChanges) -> dict[str, Any]:
    """The checked settings to store, by column name."""
    given = changes.given()
    if not given:
        raise InvalidInput("Nothing to change: give at least one setting.", code="no_change")
    return {name: _check_setting(name, value) for name, value in given.items()}


async def update(rt: Runtime, name: str, changes: PoolChanges, actor: str) -> dict[str, Any]:
    """Change a pool's settings. Open sessions keep running; the new limits apply to
    what happens from now on."""
    values = validate_changes(changes)
    now = rt.clock.now()
    async with rt.db.write() as s:
        pool = await _pool(s, name)
        before = {column: getattr(pool, column) for column in values}
        for column, value in values.items():
            setattr(pool, column, value)
        await audit.record(
            s,
            now,
            "pool_changed",
            actor=actor,
            detail={
                "pool": pool.name,
                "changes": {c: {"from": before[c], "to": v} for c, v in values.items()},
            },
        )
        return await _pool_dict(s, pool)


# -- entitlements ------------------------------------------------------------------------------

ENTITLEMENT_KINDS = ("department", "user")


def _check_kind(kind: str) -> str:
    if kind not in ENTITLEMENT_KINDS:
        raise InvalidInput(
            "An entitlement is for a 'department' or a 'user'.", code="invalid_entitlement"
        )
    return kind


async def entitle(rt: Runtime, pool: str, kind: str, value: str, actor: str) -> dict[str, Any]:
    """Open a pool to a department or a user. A pool without entitlements is open
    to everybody, so the first one closes it to all others."""
    value = check_user_name(value) if _check_kind(kind) == "user" else check_label(value, kind)
    now = rt.clock.now()
    try:
        async with rt.db.write() as s:
            p = await _pool(s, pool)
            if kind == "user" and await users.find(s, value) is None:
                raise InvalidInput(f"There is no user {value!r}.", code="unknown_user")
            if await _entitlement(s, p.id, kind, value) is not None:
                raise Conflict(f"Pool {p.name} is open to {kind} {value} already.", code="exists")
            s.add(PoolEntitlement(pool_id=p.id, kind=kind, value=value))
            return await _entitlements_changed(s, now, "pool_entitled", actor, p, kind, value)
    except IntegrityError as exc:  # the same entitlement added at the same moment
        raise Conflict(f"Pool {pool} is open to {kind} {value} already.", code="exists") from exc


async def revoke(
    rt: Runtime, pool: str, kind: str, value: str, actor: str, *, open_to_all: bool = False
) -> dict[str, Any]:
    """Close a pool to a department or a user. Open sessions keep running.

    A pool without entitlements is open to everybody, so taking away the last
    one opens the pool rather than closing it: that is refused unless
    `open_to_all` says it is meant."""
    value = normalise_user_name(value) if _check_kind(kind) == "user" else value.strip()
    now = rt.clock.now()
    async with rt.db.write() as s:
        # Locked (PostgreSQL), so two admins revoking the last two entitlements at
        # once cannot each see the other's as remaining.
        p = await _pool(s, pool, lock=True)
        ent = await _entitlement(s, p.id, kind, value)
        if ent is None:
            raise NotFound(
                f"Pool {p.name} has no entitlement for {kind} {value!r}.",
                code="unknown_entitlement",
            )
        remaining = await s.scalar(
            select(func.count())
            .select_from(PoolEntitlement)
            .where(PoolEntitlement.pool_id == p.id, PoolEntitlement.id != ent.id)
        )
        if not remaining and not open_to_all:
            raise Conflict(
                f"{kind.capitalize()} {value} is the last entitlement of pool {p.name}; "
                "without it the pool is open to everybody. Entitle who should use it "
                "first, or confirm that everybody may (vdi-broker pool revoke "
                "--open-to-all; in the admin API open_to_all=true). To close the pool "
                "to everybody, set its limit to 0 (pool set --max-sessions 0).",
                code="last_entitlement",
            )
        await s.delete(ent)
        return await _entitlements_changed(
            s, now, "pool_revoked", actor, p, kind, value, opened_to_all=not remaining
        )


async def _entitlements_changed(
    s: AsyncSession,
    now: dt.datetime,
    event: str,
    actor: str,
    p: Pool,
    kind: str,
    value: str,
    *,
    opened_to_all: bool = False,
) -> dict[str, Any]:
    """Store, audit and show an entitlement change made in `s`."""
    await s.flush()
    detail: dict[str, Any] = {"pool": p.name, "kind": kind, "value": value}
    if opened_to_all:
        detail["open_to_everybody"] = True
    await audit.record(s, now, event, actor=actor, detail=detail)
    return await _pool_dict(s, p)


async def _entitlement(
    s: AsyncSession, pool_id: int, kind: str, value: str
) -> PoolEntitlement | None:
    ent: PoolEntitlement | None = await s.scalar(
        select(PoolEntitlement).where(
            PoolEntitlement.pool_id == pool_id,
            PoolEntitlement.kind == kind,
            PoolEntitlement.value == value,
        )
    )
    return ent


# -- persistent desktops -----------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    pool: str
    user: str
    desktop: str
    host: str

    def as_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "user": self.user, "desktop": self.desktop, "host": self.host}


_open_session_on = exists().where(Session.desktop_id == Desktop.id, SESSION_OPEN)


async def assign_desktop(
    rt: Runtime, pool: str, user: str, desktop: str | None, actor: str
) -> Assignment:
    """Give a user a desktop of their own in a persistent pool: the one named
    (NAME, or HOST/NAME where names repeat across hosts) or, without a name, a free
    one. Refuses a desktop that is someone else's or in someone else's session."""
    user = check_user_name(user)
    now = rt.clock.now()
    async with rt.db.write() as s:
        p = await _persistent_pool(s, pool)
        u = await users.find(s, user)
        if u is None:
            raise InvalidInput(f"There is no user {user!r}.", code="unknown_user")
        if not await _entitled(s, p, u):
            raise Conflict(
                f"{u.name} may not use pool {p.name}; entitle the user or their department first.",
                code="not_entitled",
            )
        own = await _owned(s, p, u)
        if desktop is None:
            if own is not None:
                raise Conflict(
                    f"{u.name} has desktop {own[0].name} in pool {p.name} already.",
                    code="already_assigned",
                )
            target = await _free_desktop(s, p)
        else:
            target = await _named_desktop(s, p, desktop)
            if own is not None and own[0].id == target[0].id:
                return Assignment(p.name, u.name, own[0].name, own[1])  # nothing to change
            await _check_assignable(s, p, u, target[0], own)
        d, host = target
        claimed = await s.execute(
            sql_update(Desktop)
            .where(Desktop.id == d.id, Desktop.assigned_user_id.is_(None))
            .values(assigned_user_id=u.id)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"Desktop {d.name} was taken meanwhile; try again.", code="conflict")
        return await _audited(
            s, now, "desktop_assigned", actor, Assignment(p.name, u.name, d.name, host)
        )


async def unassign_desktop(rt: Runtime, pool: str, user: str, actor: str) -> Assignment:
    """Take a user's own desktop in a persistent pool away (not while they use it).
    A desktop that may still hold the user's logon (any power state but stopped:
    a paused one keeps it in memory) is reset by its agent before anyone else
    gets it, so the next owner never finds the previous one's logon."""
    now = rt.clock.now()
    async with rt.db.write() as s:
        p = await _persistent_pool(s, pool)
        u = await users.find(s, user)
        own = await _owned(s, p, u) if u is not None else None
        if u is None or own is None:
            raise NotFound(f"{user} has no desktop in pool {p.name}.", code="not_assigned")
        d, host = own
        if await s.scalar(select(_open_session_on).where(Desktop.id == d.id)):
            raise Conflict(
                f"{u.name} has an open session on {d.name}; end it first "
                "(vdi-broker session list, session end ID).",
                code="session_open",
            )
        d.assigned_user_id = None
        if actions.may_hold_logon(d.power_state):
            await actions.reset_for_reuse(
                s, now, host_id=d.host_id, desktop_id=d.id, desktop_name=d.name, reason="unassign"
            )
        return await _audited(
            s, now, "desktop_unassigned", actor, Assignment(p.name, u.name, d.name, host)
        )


async def _audited(
    s: AsyncSession, now: dt.datetime, event: str, actor: str, done: Assignment
) -> Assignment:
    detail = {"pool": done.pool, "desktop": done.desktop, "host": done.host}
    await audit.record(s, now, event, username=done.user, actor=actor, detail=detail)
    return done


async def _persistent_pool(s: AsyncSession, name: str) -> Pool:
    pool = await _pool(s, name, lock=True)
    if pool.type != PoolType.PERSISTENT:
        raise Conflict(
            f"Pool {pool.name} is {pool.type}: only persistent pools keep a desktop per user.",
            code="not_persistent",
        )
    return pool


async def _entitled(s: AsyncSession, pool: Pool, user: User) -> bool:
    ents = (
        await s.execute(
            select(PoolEntitlement.kind, PoolEntitlement.value).where(
                PoolEntitlement.pool_id == pool.id
            )
        )
    ).all()
    return not ents or ("department", user.department) in ents or ("user", user.name) in ents


_DESKTOP_AND_HOST = select(Desktop, Host.name).join(Host, Host.id == Desktop.host_id)


async def _owned(s: AsyncSession, pool: Pool, user: User) -> tuple[Desktop, str] | None:
    row = (
        await s.execute(
            _DESKTOP_AND_HOST.where(
                Desktop.pool_id == pool.id, Desktop.assigned_user_id == user.id
            ).order_by(Desktop.id)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def _free_desktop(s: AsyncSession, pool: Pool) -> tuple[Desktop, str]:
    """A free desktop nobody owns: clean ones first, running ones first, then by name."""
    row = (
        await s.execute(
            _DESKTOP_AND_HOST.where(
                Desktop.pool_id == pool.id,
                Desktop.missing.is_(False),
                Desktop.assigned_user_id.is_(None),
                ~_open_session_on,
            )
            .order_by(
                Desktop.needs_reset,
                case((Desktop.power_state == "running", 0), else_=1),
                Desktop.name,
                Host.name,
            )
            .limit(1)
        )
    ).first()
    if row is None:
        raise Conflict(f"Pool {pool.name} has no free desktop to assign.", code="no_free_desktop")
    return row[0], row[1]


async def _named_desktop(s: AsyncSession, pool: Pool, desktop: str) -> tuple[Desktop, str]:
    host, _, name = desktop.strip().rpartition("/")
    query = _DESKTOP_AND_HOST.where(Desktop.pool_id == pool.id, Desktop.name == name)
    if host:
        query = query.where(Host.name == host)
    rows = (await s.execute(query.order_by(Host.name))).all()
    if not rows:
        raise InvalidInput(
            f"Pool {pool.name} has no desktop {desktop.strip()!r}.", code="unknown_desktop"
        )
    if len(rows) > 1:
        hosts = ", ".join(r[1] for r in rows)
        raise InvalidInput(
            f"Desktop {name} is on several hosts ({hosts}); name it as HOST/{name}.",
            code="ambiguous_desktop",
        )
    return rows[0][0], rows[0][1]


async def _check_assignable(
    s: AsyncSession, pool: Pool, user: User, d: Desktop, own: tuple[Desktop, str] | None
) -> None:
    if own is not None:
        raise Conflict(
            f"{user.name} has desktop {own[0].name} in pool {pool.name} already; unassign it "
            "first.",
            code="already_assigned",
        )
    if d.assigned_user_id is not None:
        owner = await s.scalar(select(User.name).where(User.id == d.assigned_user_id))
        raise Conflict(f"Desktop {d.name} belongs to {owner}.", code="desktop_taken")
    other = await s.scalar(
        select(User.name)
        .join(Session, Session.user_id == User.id)
        .where(Session.desktop_id == d.id, SESSION_OPEN, User.id != user.id)
    )
    if other is not None:
        raise Conflict(f"{other} has an open session on desktop {d.name}.", code="desktop_busy")
    if d.missing:
        raise Conflict(
            f"Desktop {d.name} is missing from its host's reports.", code="desktop_missing"
        )


# -- reading -------------------------------------------------------------------------------------


async def _pool(s: AsyncSession, name: str, *, lock: bool = False) -> Pool:
    query = select(Pool).where(Pool.name == name.strip())
    if lock:
        query = query.with_for_update()
    pool: Pool | None = await s.scalar(query)
    if pool is None:
        raise NotFound(f"There is no pool {name!r}.", code="unknown_pool")
    return pool


def _as_dict(p: Pool, ents: list[PoolEntitlement], open_sessions: int) -> dict[str, Any]:
    return {
        "name": p.name,
        "type": p.type,
        "protocol": p.protocol,
        "max_sessions": p.max_sessions,
        # Licences in use; above max_sessions after the limit was lowered.
        "open_sessions": open_sessions,
        "field": p.field,
        "priority_reserve": p.priority_reserve,
        "spare_desktops": p.spare_desktops,
        "disconnect_timeout_s": p.disconnect_timeout_s,
        "max_session_s": p.max_session_s,
        "idle_timeout_s": p.idle_timeout_s,
        "departments": sorted(e.value for e in ents if e.kind == "department"),
        "users": sorted(e.value for e in ents if e.kind == "user"),
    }


_OPEN_PER_POOL = select(Session.pool_id, func.count()).where(SESSION_OPEN).group_by(Session.pool_id)


async def _open_sessions(s: AsyncSession, pool_id: int | None = None) -> dict[int, int]:
    """Open sessions (licences in use) per pool: of one pool, or of all."""
    query = _OPEN_PER_POOL if pool_id is None else _OPEN_PER_POOL.where(Session.pool_id == pool_id)
    return {pid: n for pid, n in (await s.execute(query)).all()}


async def _pool_dict(s: AsyncSession, p: Pool) -> dict[str, Any]:
    ents = (await s.scalars(select(PoolEntitlement).where(PoolEntitlement.pool_id == p.id))).all()
    return _as_dict(p, list(ents), (await _open_sessions(s, p.id)).get(p.id, 0))


async def list_all(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.db.read() as s:
        pools = (await s.scalars(select(Pool).order_by(Pool.name))).all()
        ents = (await s.scalars(select(PoolEntitlement))).all()
        open_sessions = await _open_sessions(s)
    by_pool: dict[int, list[PoolEntitlement]] = {}
    for e in ents:
        by_pool.setdefault(e.pool_id, []).append(e)
    return [_as_dict(p, by_pool.get(p.id, []), open_sessions.get(p.id, 0)) for p in pools]
