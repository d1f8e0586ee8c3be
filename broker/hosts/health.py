"""Is a host up? Derived from how fresh its last report is."""

from __future__ import annotations

import datetime as dt


def is_up(
    last_report_at: dt.datetime | None, now: dt.datetime, interval_s: float, missed: int
) -> bool:
    """Up while the last report is younger than `missed` report intervals."""
    if last_report_at is None:
        return False
    return (now - last_report_at).total_seconds() < interval_s * missed
