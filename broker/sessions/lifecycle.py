"""Background job: move sessions along their lifecycle and keep desktops ready.

Each round (one broker does it, see broker.jobs):
- pending sessions whose desktop now runs become active; ones that waited longer
  than `pending_timeout_s` end as `start_timeout` (and count as slow launches);
- a desktop the agent sees in use keeps its session alive (and active);
- per pool: disconnected too long, or never connected (active without a
  tunnel or console use) that long -> `disconnect_timeout`, open too long ->
  `max_session_time`, no activity too long -> `idle_timeout`;
- home sessions whose telework window closed `schedule_grace_s` ago end as
  `outside_schedule` (see broker.policy.schedule for why there is a grace; a
  rule added later counts its grace from when it was added);
- sessions on a desktop missing from its host's reports for
  `desktop_lost_grace_s` end as `desktop_lost` (as broker.hosts.monitor ends
  the sessions of a host down for `host_lost_grace_s` as `host_lost`): the
  desktop is gone, and its user gets a new one instead of a dead ticket;
- floating desktops whose reset failed are reset again, less often with each
  failure in a row (broker.hosts.backoff);
- spare desktops are started and stopped (broker.placement.spares);
- expired tunnel tickets are deleted, and tunnel rows of a gateway replica that
  died (broker.gateway.service.purge_stale_tunnels).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.engine import Row

from agent.protocol import ActionKind
from broker import fleet
from broker.domain import SessionState
from broker.gateway import tickets
from broker.gateway.service import purge_stale_tunnels
from broker.hosts import actions, backoff
from broker.placement.spares import SpareCandidate, plan_spares
from broker.runtime import Runtime
from broker.sessions import schedules, service
from broker.sessions.snapshot import RUNNING_WITH_CONSOLE
from broker.store.db import Executor
from broker.store.tables import (
    SESSION_OPEN,
    Desktop,
    GatewayTunnel,
    Host,
    HostAction,
    Pool,
    Session,
    User,
    table,
)

log = logging.getLogger(__name__)

_sessions = table(Session)
_desktops = table(Desktop)
_hosts = table(Host)
_pools = table(Pool)
_users = table(User)
_actions = table(HostAction)
_tunnels = table(GatewayTunnel)
_open_on_desktop = exists().where(_sessions.c.desktop_id == _desktops.c.id, SESSION_OPEN)


def _ago(now: dt.datetime, seconds: float) -> dt.datetime:
    return now - dt.timedelta(seconds=seconds)


async def run_lifecycle(rt: Runtime) -> None:
    now = rt.clock.now()
    async with rt.db.write_conn() as conn:
        await service.promote_ready(rt, conn, now)
        await _desktops_in_use(conn, now)
        await service.end_start_timeouts(rt, conn, now, _ago(now, rt.settings.pending_timeout_s))
        await _pool_limits(rt, conn, now)
        await _schedules(rt, conn, now)
        await _lost_desktops(rt, conn, now)
        await _retry_resets(conn, now)
        await tickets.purge_expired(conn, _ago(now, 3600))
    await purge_stale_tunnels(rt)
    await manage_spares(rt)


async def _desktops_in_use(conn: Executor, now: dt.datetime) -> None:
    """The agent sees a client on the console: the session is in use right now.

    Only a report newer than the session's disconnection counts: the gateway
    disconnects a session when its last tunnel closes, and the host's previous
    report, which still saw that tunnel's connection, must not undo it.
    """
    in_use = select(_desktops.c.id).where(_desktops.c.connections > 0)
    last_report = (
        select(_hosts.c.last_report_at).where(_hosts.c.id == _sessions.c.host_id).scalar_subquery()
    )
    await conn.execute(
        update(_sessions)
        .where(
            SESSION_OPEN,
            _sessions.c.state != SessionState.PENDING.value,
            _sessions.c.desktop_id.in_(in_use),
            or_(_sessions.c.disconnected_at.is_(None), _sessions.c.disconnected_at < last_report),
        )
        .values(state=SessionState.ACTIVE.value, last_activity_at=now, disconnected_at=None)
    )


async def _pool_limits(rt: Runtime, conn: Executor, now: dt.datetime) -> None:
    pools = (
        await conn.execute(
            select(_pools).where(
                (_pools.c.disconnect_timeout_s.isnot(None))
                | (_pools.c.max_session_s.isnot(None))
                | (_pools.c.idle_timeout_s.isnot(None))
            )
        )
    ).all()
    for p in pools:
        in_pool = _sessions.c.pool_id == p.id
        if p.disconnect_timeout_s is not None:
            await service.end_where(
                rt,
                conn,
                and_(in_pool, _not_connected_since(_ago(now, p.disconnect_timeout_s))),
                "disconnect_timeout",
                now,
                "broker",
            )
        if p.max_session_s is not None:
            await service.end_where(
                rt,
                conn,
                and_(
                    in_pool,
                    _sessions.c.created_at < _ago(now, p.max_session_s),
                ),
                "max_session_time",
                now,
                "broker",
            )
        if p.idle_timeout_s is not None:
            await service.end_where(
                rt,
                conn,
                and_(
                    in_pool,
                    _sessions.c.state != SessionState.PENDING.value,
                    _sessions.c.last_activity_at < _ago(now, p.idle_timeout_s),
                ),
                "idle_timeout",
                now,
                "broker",
            )


def _not_connected_since(before: dt.datetime) -> ColumnElement[bool]:
    """Sessions nobody has been connected to since `before`: disconnected then, or
    active without a tunnel and with no sign of use since (an assigned desktop
    nobody ever connected to holds a licence as much as a disconnected one)."""
    return or_(
        and_(
            _sessions.c.state == SessionState.DISCONNECTED.value,
            _sessions.c.disconnected_at < before,
            # A fresh ticket asked for since counts as a return.
            _sessions.c.last_activity_at < before,
        ),
        and_(
            _sessions.c.state == SessionState.ACTIVE.value,
            ~exists().where(_tunnels.c.session_id == _sessions.c.id),
            _sessions.c.last_activity_at < before,
        ),
    )


async def _schedules(rt: Runtime, conn: Executor, now: dt.datetime) -> None:
    """End home sessions whose telework window closed more than the grace ago
    (or that a rule made since put outside, more than the grace ago)."""
    grace = dt.timedelta(seconds=rt.settings.schedule_grace_s)
    outside = await schedules.outside_windows(conn, now, ZoneInfo(rt.settings.timezone))
    overdue = [session_id for session_id, closed in outside.items() if closed >= grace]
    if overdue:
        await service.end_where(
            rt, conn, _sessions.c.id.in_(overdue), "outside_schedule", now, "broker"
        )


async def _lost_desktops(rt: Runtime, conn: Executor, now: dt.datetime) -> None:
    """End the sessions on desktops that have been missing longer than the grace.
    The grace lets a desktop that only dropped out of a listing come back."""
    lost = select(_desktops.c.id).where(
        _desktops.c.missing.is_(True),
        _desktops.c.missing_since < _ago(now, rt.settings.desktop_lost_grace_s),
    )
    ended = await service.end_where(
        rt, conn, _sessions.c.desktop_id.in_(lost), "desktop_lost", now, "broker"
    )
    if ended:
        log.warning("%d session(s) ended as desktop_lost", len(ended))


async def _retry_resets(conn: Executor, now: dt.datetime) -> None:
    """A dirty desktop with no reset on its way (the last one failed) gets another,
    after a wait that grows with each failure in a row (broker.hosts.backoff)."""
    reset_queued = exists().where(
        _actions.c.desktop_id == _desktops.c.id,
        _actions.c.state == "queued",
        _actions.c.kind == ActionKind.RESET.value,
    )
    rows = (
        await conn.execute(
            select(_desktops.c.id, _desktops.c.name, _desktops.c.host_id).where(
                _desktops.c.needs_reset.is_(True),
                _desktops.c.missing.is_(False),
                ~reset_queued,
                ~_open_on_desktop,
            )
        )
    ).all()
    if not rows:
        return
    outcomes: dict[int, list[tuple[dt.datetime, bool]]] = {d.id: [] for d in rows}
    finished = await conn.execute(
        select(_actions.c.desktop_id, _actions.c.finished_at, _actions.c.state).where(
            _actions.c.desktop_id.in_(list(outcomes)),
            _actions.c.kind == ActionKind.RESET.value,
            _actions.c.finished_at.isnot(None),
        )
    )
    for desktop_id, finished_at, state in finished:
        outcomes[desktop_id].append((finished_at, state == "done"))
    for d in rows:
        if not backoff.reset_due(outcomes[d.id], now):
            continue
        await actions.queue(
            conn,
            now,
            host_id=d.host_id,
            desktop_id=d.id,
            desktop_name=d.name,
            kind=ActionKind.RESET,
            reason="recycle",
        )


async def manage_spares(rt: Runtime) -> None:
    state = await fleet.read(rt)
    scores = {h.id: (h.load.index if h.load else 1.0) for h in state.hosts.values()}
    # A spare serves a logon only where placement would hand it out: on a host
    # that takes sessions, with a console that answers.
    serving = {h.id for h in state.hosts.values() if h.accepting}
    with_room = {h.id for h in state.hosts.values() if h.accepting and h.open_sessions < h.capacity}
    now = rt.clock.now()
    start_queued = exists().where(
        _actions.c.desktop_id == _desktops.c.id,
        _actions.c.state == "queued",
        _actions.c.kind == ActionKind.START.value,
    )
    # Started, but the guest has not answered yet: its RDP or VNC service comes up
    # a minute or so after the power. Such a desktop is on its way, like one whose
    # start is queued; counted as missing, each round would start more for as long
    # as guests boot. It gets the wait a pending session gets (pending_timeout_s);
    # still silent after that, it is out of service and a replacement starts.
    booting = exists().where(
        _actions.c.desktop_id == _desktops.c.id,
        _actions.c.state == "done",
        _actions.c.kind == ActionKind.START.value,
        _actions.c.finished_at > _ago(now, rt.settings.pending_timeout_s),
    )
    async with rt.db.write_conn() as conn:
        pools = (
            await conn.execute(
                select(_pools.c.id, _pools.c.name, _pools.c.spare_desktops).where(
                    _pools.c.spare_desktops.isnot(None)
                )
            )
        ).all()
        for pool in pools:
            rows = (
                await conn.execute(
                    select(
                        _desktops.c.id,
                        _desktops.c.name,
                        _desktops.c.host_id,
                        _desktops.c.power_state,
                        _desktops.c.idle_since,
                        start_queued.label("starting"),
                        RUNNING_WITH_CONSOLE.label("ready"),
                        booting.label("booting"),
                    ).where(
                        _desktops.c.pool_id == pool.id,
                        _desktops.c.missing.is_(False),
                        _desktops.c.needs_reset.is_(False),
                        _desktops.c.assigned_user_id.is_(None),
                        ~_open_on_desktop,
                    )
                )
            ).all()

            def candidate(r: Row[Any]) -> SpareCandidate:
                return SpareCandidate(
                    r.id, r.name, r.host_id, scores.get(r.host_id, 1.0), r.idle_since
                )

            ready = [candidate(r) for r in rows if r.ready and r.host_id in serving]
            startable = [
                candidate(r)
                for r in rows
                if r.power_state == "stopped" and not r.starting and r.host_id in with_room
            ]
            starting = sum(
                1
                for r in rows
                if r.starting or (r.booting and r.power_state == "running" and not r.ready)
            )
            plan = plan_spares(
                pool.spare_desktops,
                ready,
                startable,
                starting,
                now,
                rt.settings.spare_idle_stop_s,
            )
            for c, kind in [(c, ActionKind.START) for c in plan.start] + [
                (c, ActionKind.STOP) for c in plan.stop
            ]:
                await actions.queue(
                    conn,
                    now,
                    host_id=c.host_id,
                    desktop_id=c.desktop_id,
                    desktop_name=c.name,
                    kind=kind,
                    reason="spare",
                )
            if plan.start or plan.stop:
                log.info(
                    "pool %s: starting %d and stopping %d spare desktop(s)",
                    pool.name,
                    len(plan.start),
                    len(plan.stop),
                )
