"""Background job: notice silent hosts, and give up their sessions after a grace.

A host is down when it missed `host_down_after_missed` report intervals (see
broker.hosts.health); placement already avoids it from that moment. This job
records the moment (hosts.down_since, audit `host_down`) and, once a host has
been down for `host_lost_grace_s`, ends the sessions on it as `host_lost`, so
their users get a new desktop elsewhere instead of waiting for a dead one.

Silence counts only from when this broker took over the jobs (Runtime.jobs_since),
or from the end of a gap of a whole window without a round that got through:
while the brokers were stopped or the database was away, no report could be
stored, and every host would look silent the moment the jobs run again. Calling
a whole fleet down (audit, log, alert) for the broker's own outage would send
ops to hosts that are fine; each host gets the usual window to report first.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row

from broker.audit import log as audit
from broker.hosts.health import fresh_after
from broker.runtime import Runtime
from broker.sessions.service import end_where
from broker.store.tables import Desktop, Host, Session, table

log = logging.getLogger(__name__)

_hosts = table(Host)
_desktops = table(Desktop)
_sessions = table(Session)


async def check_hosts(rt: Runtime) -> None:
    settings = rt.settings
    now = rt.clock.now()
    # Not fresh any more: the moment placement stopped counting the host as up.
    silent_since = fresh_after(now, settings.report_interval, settings.host_down_after_missed)
    lost_before = now - dt.timedelta(seconds=settings.host_lost_grace_s)
    last = rt.hosts_checked_at
    if last is not None and last < silent_since - dt.timedelta(seconds=settings.job_interval_s):
        # No round got through for a whole window (and a round's own interval,
        # which may be the longer), though we kept the jobs lock: a partition that
        # left its connection open, a locked SQLite file. The reports could not
        # be stored either.
        rt.jobs_since = now
    judging = rt.jobs_since is None or rt.jobs_since <= silent_since
    async with rt.db.write_conn() as conn:
        went_down: Sequence[Row[Any]] = []
        if judging:
            went_down = (
                await conn.execute(
                    update(_hosts)
                    .where(_hosts.c.down_since.is_(None), _hosts.c.last_report_at < silent_since)
                    .values(down_since=now)
                    .returning(_hosts.c.name, _hosts.c.last_report_at)
                )
            ).all()
        for row in went_down:
            name, last = row.name, row.last_report_at
            log.warning("host %s is down: no report since %s", name, last.isoformat())
            await audit.record(
                conn,
                now,
                "host_down",
                actor="broker",
                detail={"host": name, "last_report_at": last.isoformat()},
            )
        lost_desktops = (
            select(_desktops.c.id)
            .join(_hosts, _hosts.c.id == _desktops.c.host_id)
            .where(_hosts.c.down_since < lost_before)
        )
        lost = await end_where(
            rt, conn, _sessions.c.desktop_id.in_(lost_desktops), "host_lost", now, "broker"
        )
        if lost:
            log.warning("%d session(s) ended as host_lost", len(lost))
    rt.hosts_checked_at = now
