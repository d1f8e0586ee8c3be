"""Writing and reading the audit log.

Events (the `event` column): login (with `result`), account_locked, totp_replay,
enrolment_started, totp_enrolled, totp_enrolment_failed (`result`: invalid_code or
too_many_codes), totp_enrolment_cancelled, totp_reset,
recovery_code_used, logout, user_added, user_locked, user_unlocked, pool_added,
host_added, host_drained, host_activated, agent_report_rejected, policy_changed
(`result` says which policy and how), pool_changed, pool_entitled, pool_revoked,
desktop_assigned, desktop_unassigned, desktop_moved (a host reports a desktop in
another pool), and the admin actions of later features.
Times are UTC. Text from outside is escaped; secrets never get here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from broker.audit.escape import escape_detail, escape_text
from broker.store.db import Executor
from broker.store.tables import AuditEvent, table

# A detail key that names a secret is a programming error, caught before storing.
_SECRET_WORDS = ("password", "secret", "token", "ticket", "code", "cookie")


class SecretInAuditError(ValueError):
    pass


def _check_detail(detail: dict[str, Any]) -> None:
    for key in detail:
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS) and not lowered.endswith("_id"):
            raise SecretInAuditError(f"audit detail key {key!r} looks like a secret")


# Built once: this runs on every login, and a fresh statement per call costs
# more CPU (construction, cache key) than the INSERT itself.
_INSERT = insert(table(AuditEvent))


def _opt(value: str | None, max_length: int = 256) -> str | None:
    return None if value is None else escape_text(value, max_length)


async def record(
    session: Executor,
    at: dt.datetime,
    event: str,
    *,
    result: str | None = None,
    username: str | None = None,
    actor: str | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one audit event inside the caller's transaction."""
    if detail:
        _check_detail(detail)
    await session.execute(
        _INSERT,
        {
            "at": at,
            "event": event,
            "result": result,
            "username": _opt(username, 128),
            "actor": _opt(actor, 128),
            "source_ip": _opt(source_ip, 64),
            "user_agent": _opt(user_agent, 512),
            "detail": escape_detail(detail) if detail else None,
        },
    )


@dataclass(frozen=True)
class AuditQuery:
    event: str | None = None
    result: str | None = None
    username: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before_id: int | None = None
    limit: int = 50


def statement(q: AuditQuery) -> Select[AuditEvent]:
    """The SELECT of query(): newest first.

    Texts are compared as they are stored: escaped and cut like record() does,
    so a filter for a name with a control character finds it, and no NUL
    reaches PostgreSQL (which refuses one in text). User names match in any
    case: accounts are lower case, but a login records the name as typed. Both
    sides go through the database's lower(), the expression the index holds,
    so the two sides fold alike on SQLite and PostgreSQL."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(q.limit)
    if q.event:
        stmt = stmt.where(AuditEvent.event == _opt(q.event, 48))
    if q.result:
        stmt = stmt.where(AuditEvent.result == _opt(q.result, 48))
    if q.username:
        stmt = stmt.where(func.lower(AuditEvent.username) == func.lower(_opt(q.username, 128)))
    if q.since:
        stmt = stmt.where(AuditEvent.at >= q.since)
    if q.until:
        stmt = stmt.where(AuditEvent.at < q.until)
    if q.before_id is not None:
        stmt = stmt.where(AuditEvent.id < q.before_id)
    return stmt


async def query(session: AsyncSession, q: AuditQuery) -> list[AuditEvent]:
    """Newest first; page with `before_id` set to the last id of the previous page."""
    return list((await session.scalars(statement(q))).all())


def as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "event": event.event,
        "result": event.result,
        "username": event.username,
        "actor": event.actor,
        "source_ip": event.source_ip,
        "user_agent": event.user_agent,
        "detail": event.detail or {},
    }
