"""Background job: keep the audit log for the retention period, and no longer.

Audit events older than `audit_retention_days` (one year by default) are
deleted; the purge itself is an audit event, so the log says when and how much
was removed. Spent web sessions and enrolments go too: they are useless once
expired, and nobody should find old session hashes in a backup. So do failed
logins of names without an account, a day after the last one, and finished
power actions after `action_retention_days` (a week by default): each session
end leaves a reset, and spare desktops a start and a stop, so the table would
otherwise grow for as long as the broker runs.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, or_

from broker.audit import log as audit
from broker.auth import name_lockout
from broker.runtime import Runtime
from broker.store.tables import (
    AuditEvent,
    Enrolment,
    HostAction,
    LoginFailure,
    WebSession,
    table,
)

log = logging.getLogger(__name__)

_audit = table(AuditEvent)
_web = table(WebSession)
_enrolments = table(Enrolment)
_failures = table(LoginFailure)
_actions = table(HostAction)


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
