"""Managing users: add, list, lock, unlock, reset TOTP (used by the CLI and admin API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from broker.audit import log as audit
from broker.auth import enrolment, websessions
from broker.auth.ldap import Mapped
from broker.auth.passwords import check_new_password
from broker.domain import Role, WorkMode
from broker.errors import Conflict, InvalidInput, NotFound
from broker.names import check_label, check_user_name, normalise_user_name
from broker.runtime import Runtime
from broker.sessions.service import end_where
from broker.store.db import Executor
from broker.store.tables import RecoveryCode, Session, User, table


@dataclass(frozen=True)
class NewUser:
    name: str
    department: str
    role: Role = Role.STAFF
    work_mode: WorkMode = WorkMode.HOME
    priority_class: str | None = None
    team: str | None = None


def validate(new: NewUser) -> NewUser:
    return NewUser(
        name=check_user_name(new.name),
        department=check_label(new.department, "department"),
        role=Role(new.role),
        work_mode=WorkMode(new.work_mode),
        priority_class=check_label(new.priority_class, "priority class")
        if new.priority_class
        else None,
        team=check_label(new.team, "team") if new.team else None,
    )


async def add(rt: Runtime, new: NewUser, password: str | None, actor: str) -> User:
    """Create a local user. The password is checked and hashed before anything is stored."""
    new = validate(new)
    password_hash = None
    if password is not None:
        check_new_password(password, new.name)
        password_hash = await rt.hasher.hash(password)
    now = rt.clock.now()
    user = User(
        name=new.name,
        department=new.department,
        role=new.role.value,
        work_mode=new.work_mode.value,
        priority_class=new.priority_class,
        team=new.team,
        password_hash=password_hash,
        failed_logins=0,
        disabled=False,
        created_at=now,
    )
    try:
        async with rt.db.write() as s:
            s.add(user)
            await s.flush()
            await audit.record(
                s,
                now,
                "user_added",
                username=new.name,
                actor=actor,
                detail={
                    "department": new.department,
                    "role": new.role.value,
                    "work_mode": new.work_mode.value,
                },
            )
    except IntegrityError as exc:
        raise _taken(new.name) from exc
    return user


async def check_name_free(rt: Runtime, name: str) -> None:
    """Refuse a user name that an account has already."""
    async with rt.db.read() as s:
        if await find(s, name) is not None:
            raise _taken(normalise_user_name(name))


def _taken(name: str) -> Conflict:
    return Conflict(f"A user named {name!r} exists already.", code="exists")


async def list_all(rt: Runtime) -> list[User]:
    async with rt.db.read() as s:
        return list((await s.scalars(select(User).order_by(User.name))).all())


async def departments(rt: Runtime) -> set[str]:
    """The departments that users are in."""
    async with rt.db.read() as s:
        return set((await s.scalars(select(User.department).distinct())).all())


async def priority_classes(rt: Runtime) -> set[str]:
    """The priority classes that users have."""
    async with rt.db.read() as s:
        query = select(User.priority_class).where(User.priority_class.isnot(None)).distinct()
        return {c for c in (await s.scalars(query)).all() if c is not None}


async def find(s: Executor, name: str) -> User | None:
    """The user of that name (as typed: spaces and case do not matter), or None."""
    user: User | None = await s.scalar(select(User).where(User.name == normalise_user_name(name)))
    return user


async def _get(s: Executor, name: str) -> User:
    user = await find(s, name)
    if user is None:
        raise NotFound(f"There is no user {name!r}.")
    return user


async def set_locked(rt: Runtime, name: str, locked: bool, actor: str) -> User:
    """Lock or unlock a user; unlocking also clears failures. Locking logs them out
    everywhere, ends their desktop sessions (the gateway then closes their
    tunnels) and their open enrolments (else a token from before the lock would
    bind an authenticator after an unlock): a locked account keeps no way in.
    Nobody locks their own account: one click would shut an administrator out of
    the portal."""
    now = rt.clock.now()
    async with rt.db.write() as s:
        user = await _get(s, name)
        if locked and user.name == actor:
            raise InvalidInput("You cannot lock your own account.", code="own_account")
        user.disabled = locked
        if locked:
            await websessions.revoke_all(s, user.id, now)
            await enrolment.end_all(s, user.id, now)
            await end_where(rt, s, table(Session).c.user_id == user.id, "user_locked", now, actor)
        else:
            user.failed_logins = 0
            user.locked_until = None
        await audit.record(
            s, now, "user_locked" if locked else "user_unlocked", username=user.name, actor=actor
        )
    return user


async def reset_totp(rt: Runtime, name: str, actor: str) -> User:
    """Forget the user's TOTP secret and recovery codes; the next login enrols again.
    Enrolments opened before are ended too: one left unfinished would otherwise be
    usable again, now that the account has no secret, by whoever holds its token."""
    now = rt.clock.now()
    async with rt.db.write() as s:
        user = await _get(s, name)
        user.totp_secret = None
        await s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        await enrolment.end_all(s, user.id, now)
        await websessions.revoke_all(s, user.id, now)
        await audit.record(s, now, "totp_reset", username=user.name, actor=actor)
    return user


def as_dict(user: User, now: Any = None) -> dict[str, Any]:
    locked = user.disabled or (
        now is not None and user.locked_until is not None and user.locked_until > now
    )
    return {
        "name": user.name,
        "department": user.department,
        "role": user.role,
        "work_mode": user.work_mode,
        "priority_class": user.priority_class,
        "team": user.team,
        "auth_source": user.auth_source,
        "totp_enrolled": user.totp_secret is not None,
        "locked": locked,
        "disabled": user.disabled,
        "failed_logins": user.failed_logins,
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }


async def sync_directory_user(rt: Runtime, name: str, mapped: Mapped) -> None:
    """Create or update the local row of a directory user from their groups."""
    now = rt.clock.now()
    values = {
        "department": check_label(mapped.department, "department"),
        "role": mapped.role.value,
        "work_mode": mapped.work_mode.value,
        "priority_class": check_label(mapped.priority_class, "priority class")
        if mapped.priority_class
        else None,
        "team": check_label(mapped.team, "team") if mapped.team else None,
    }
    async with rt.db.write() as s:
        user = await s.scalar(select(User).where(User.name == name))
        if user is None:
            s.add(
                User(
                    name=name,
                    auth_source="ldap",
                    password_hash=None,
                    failed_logins=0,
                    disabled=False,
                    created_at=now,
                    **values,
                )
            )
            await audit.record(
                s,
                now,
                "user_added",
                username=name,
                actor="ldap",
                detail={"source": "directory", **values},
            )
            return
        changed = {k: v for k, v in values.items() if getattr(user, k) != v}
        if changed:
            for key, value in changed.items():
                setattr(user, key, value)
            await audit.record(
                s,
                now,
                "user_synced",
                username=name,
                actor="ldap",
                detail={"changed": sorted(changed)},
            )
