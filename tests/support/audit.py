"""Reading the audit log back in tests."""

from __future__ import annotations

from sqlalchemy import select

from broker.runtime import Runtime
from broker.store.tables import AuditEvent


async def audit_events(rt: Runtime, event: str | None = None) -> list[AuditEvent]:
    """The audit events, oldest first; only those named `event` if given."""
    async with rt.db.read() as s:
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        if event:
            stmt = stmt.where(AuditEvent.event == event)
        return list((await s.scalars(stmt)).all())
