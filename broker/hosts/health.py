"""Is a host up? Derived from how fresh its last report is."""

from __future__ import annotations

import datetime as dt


def fresh_after(now: dt.datetime, interval_s: float, missed: int) -> dt.datetime:
    """Reports after this moment are fresh: younger than `missed` intervals."""
    return now - dt.timedelta(seconds=interval_s * missed)


def is_up(last_report_at: dt.datetime | None, fresh_since: dt.datetime) -> bool:
    """Up while the last report is fresh (see fresh_after)."""
    return last_report_at is not None and last_report_at > fresh_since
