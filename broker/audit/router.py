"""GET /api/v1/admin/audit: the audit log for administrators, filtered and paged."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from broker.audit import log as audit
from broker.clock import to_utc
from broker.deps import AdminDep, RuntimeDep
from broker.errors import InvalidInput
from broker.numbers import WrittenInt
from broker.store.types import MAX_INT

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get("/audit")
async def list_audit(
    _: AdminDep,
    rt: RuntimeDep,
    event: Annotated[str | None, Query(max_length=48)] = None,
    result: Annotated[str | None, Query(max_length=48)] = None,
    username: Annotated[str | None, Query(max_length=128)] = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before_id: Annotated[WrittenInt | None, Query(ge=1, le=MAX_INT)] = None,
    limit: Annotated[WrittenInt, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    q = audit.AuditQuery(
        event=event,
        result=result,
        username=username,
        since=_utc(since, "since"),
        until=_utc(until, "until"),
        before_id=before_id,
        limit=limit,
    )
    async with rt.db.read() as s:
        events = await audit.query(s, q)
    items = [audit.as_dict(e) for e in events]
    next_before = items[-1]["id"] if len(items) == limit else None
    return {"items": items, "next_before_id": next_before}


def _utc(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return to_utc(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a time between the years 1 and 9999 in UTC.") from None
