"""The audit log page: filters (event, user, result, time range) and paging.

Reading is broker.audit.log.query, newest first, paged by id like the admin API
(`before` is the last id of the previous page). Times in the filter are local
times in the broker's time zone, as a person means them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response

from broker.audit import log as audit
from broker.clock import to_utc
from broker.deps import RuntimeDep
from broker.numbers import ascii_int
from broker.store.types import MAX_INT
from broker.web.access import AdminPageIdentity
from broker.web.i18n import translator
from broker.web.pages import Notice, language_of, render

router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 50
FILTERS = ("event", "result", "user", "since", "until")
# Offered in the event field; any other text is a filter, too.
KNOWN_EVENTS = (
    "login",
    "logout",
    "account_locked",
    "totp_replay",
    "totp_enrolled",
    "totp_enrolment_failed",
    "totp_reset",
    "recovery_code_used",
    "session_started",
    "session_reconnected",
    "session_refused",
    "sessions_ended",
    "user_added",
    "user_locked",
    "user_unlocked",
    "host_added",
    "host_drained",
    "host_activated",
    "host_maintenance",
    "pool_added",
    "pool_changed",
    "policy_changed",
    "agent_report_rejected",
)


class BadTime(ValueError):
    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


def _local_time(value: str, zone: ZoneInfo, label: str) -> dt.datetime | None:
    """A datetime-local field ("2026-03-02T09:00") in the broker's zone, as UTC."""
    if not value:
        return None
    try:
        return to_utc(dt.datetime.fromisoformat(value).replace(tzinfo=zone))
    except ValueError:
        raise BadTime(label) from None


def _before(value: str) -> int | None:
    number = ascii_int(value)
    return number if number is not None and 0 < number <= MAX_INT else None


@router.get("/audit")
async def audit_page(request: Request, rt: RuntimeDep, who: AdminPageIdentity) -> Response:
    params = request.query_params
    chosen = {name: params.get(name, "").strip()[:128] for name in FILTERS}
    zone = ZoneInfo(rt.settings.timezone)
    events: list[dict[str, Any]] = []
    older = None
    notice: Notice | None = None
    status = 200
    try:
        query = audit.AuditQuery(
            event=chosen["event"] or None,
            result=chosen["result"] or None,
            username=chosen["user"] or None,
            since=_local_time(chosen["since"], zone, "audit.since"),
            until=_local_time(chosen["until"], zone, "audit.until"),
            before_id=_before(params.get("before", "")),
            limit=PAGE_SIZE,
        )
    except BadTime as bad:
        t = translator(language_of(request, rt))
        notice = Notice("error", t("audit.bad_time", field=t(bad.label)))
        status = 422
    else:
        async with rt.db.read() as s:
            found = await audit.query(s, query)
        events = [audit.as_dict(e) | {"at": e.at, "detail_text": _detail(e.detail)} for e in found]
        if len(found) == PAGE_SIZE:
            older = _url({**chosen, "before": str(found[-1].id)})
    return render(
        request, rt, "admin/audit.html", who=who, status=status, notice=notice,
        events=events, chosen=chosen, known_events=KNOWN_EVENTS, older=older,
        newest=_url(chosen) if params.get("before") else None,
    )  # fmt: skip


def _url(values: dict[str, str]) -> str:
    query = urlencode({k: v for k, v in values.items() if v})
    return f"/admin/audit?{query}" if query else "/admin/audit"


def _detail(detail: dict[str, Any] | None) -> str:
    return json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else ""
