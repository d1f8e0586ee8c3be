"""Background job: keep the audit log for the retention period, and no longer.

Audit events older than `audit_retention_days` (one year by default) are
deleted; the purge itself is an audit event, so the log says when and how much
was removed. Spent web sessions and enrolments go too: they are useless once
expired, and nobody should find old session hashes in a backup. So do failed
logins of names without an account, a day after the last one, and finished
power actions after `action_retention_days` (a week by default): each session
end leaves a reset, and spare desktops a start and a stop, so the table would
otherwise grow for as long as the broker runs. Desktops missing from their
host's reports for `missing_desktop_retention_days` (a week) are forgotten,
unless a session is still open on one: deleted VMs would otherwise stay in the
capacity figures and dashboards as "missing" for good. One that comes back
later is added again as new.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, exists, or_
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.audit import log as audit
from broker.auth import name_lockout
from broker.runtime import Runtime
from broker.store.tables import (
    SESSION_OPEN,
    AuditEvent,
    Desktop,
    Enrolment,
    HostAction,
    LoginFailure,
    Session,
    WebSession,
    table,
)

log = logging.getLogger(__name__)

_audit = table(AuditEvent)
_web = table(WebSession)
_enrolments = table(Enrolment)
_failures = table(LoginFailure)
_actions = table(HostAction)
_desktops = table(Desktop)
_sessions = table(Session)


async def purge(rt: Runtime) -> int:
    """Delete what is past keeping; returns the number of audit events removed."""
    settings = rt.settings
    now = rt.clock.now()
    before = now - dt.timedelta(days=settings.audit_retention_days)
    sessions_before = now - dt.timedelta(seconds=settings.session_absolute_timeout_s)
    async with rt.db.write_conn() as conn:
        removed = (await conn.execute(delete(_audit).where(_audit.c.at < before))).rowcount
        await conn.execute(
            delete(_web).where(
                or_(_web.c.created_at < sessions_before, _web.c.revoked_at < sessions_before)
            )
        )
        await conn.execute(delete(_enrolments).where(_enrolments.c.expires_at < sessions_before))
        forget = name_lockout.forget_before(now, settings.lockout_max_delay_s)
        await conn.execute(delete(_failures).where(_failures.c.last_failure_at < forget))
        # Queued actions stay whatever their age: they have not been done yet.
        done_before = now - dt.timedelta(days=settings.action_retention_days)
        await conn.execute(delete(_actions).where(_actions.c.finished_at < done_before))
        gone_before = now - dt.timedelta(days=settings.missing_desktop_retention_days)
        forgotten = await _forget_missing_desktops(conn, gone_before)
        if forgotten:
            await audit.record(
                conn,
                now,
                "desktops_forgotten",
                actor="broker",
                detail={
                    "desktops": len(forgotten),
                    "names": forgotten[:_NAMES_AUDITED],
                    "missing_since_before": gone_before.isoformat(),
                },
            )
        if removed:
            await audit.record(
                conn,
                now,
                "audit_purged",
                actor="broker",
                detail={
                    "events": removed,
                    "before": before.isoformat(),
                    "retention_days": settings.audit_retention_days,
                },
            )
    if removed:
        log.info("removed %d audit events older than %s", removed, before.date())
    return int(removed)


# The audit event names this many of the desktops forgotten in one round.
_NAMES_AUDITED = 50


async def _forget_missing_desktops(conn: AsyncConnection, gone_before: dt.datetime) -> list[str]:
    """Delete the desktops missing since before `gone_before` that no open
    session holds; their names, sorted."""
    forget = (
        delete(_desktops)
        .where(
            _desktops.c.missing.is_(True),
            _desktops.c.missing_since < gone_before,
            ~exists().where(_sessions.c.desktop_id == _desktops.c.id, SESSION_OPEN),
        )
        .returning(_desktops.c.name)
    )
    return sorted((await conn.scalars(forget)).all())
