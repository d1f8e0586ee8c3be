"""Taking in an agent's report: check it, store it, answer with actions.

Checks, in this order: the bearer token (401), the report's schema (422), that
the token's host is the one reporting (403), the clock (400), and that `seq`
rises (409). Only then is anything stored, in one transaction.

The usual report changes nothing but the metrics, and ingestion must keep up
with thousands of hosts. So a process remembers which host a token belongs to,
and the usual report is stored by one conditional UPDATE that holds only if the
token is still that host's, the seq rises, the desktop inventory is unchanged
and the host was not down. Any other report takes the full path, which checks
everything against the database again.
"""

from __future__ import annotations

import datetime as dt
import logging

from pydantic import ValidationError
from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.engine import Row

from agent.protocol import (
    ActionKind,
    DesktopReport,
    Report,
    ReportResponse,
)
from broker.audit import log as audit
from broker.auth.ratelimit import retry_after
from broker.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    RateLimited,
    Unauthorized,
    VdiError,
)
from broker.hosts import actions
from broker.hosts.inventory import PoolResolver, StoredDesktop, inventory_digest, plan
from broker.hosts.known import KnownHost
from broker.hosts.moves import apply_moves
from broker.hosts.store import STORE_REPORT, figures
from broker.net import source_key
from broker.runtime import Runtime
from broker.security.tokens import same, token_hash
from broker.store.db import Executor
from broker.store.tables import SESSION_OPEN, Desktop, Host, Pool, Session, table

log = logging.getLogger(__name__)

_hosts = table(Host)
_desktops = table(Desktop)
_sessions = table(Session)
_pools = table(Pool)

_HOST_COLUMNS = (
    _hosts.c.id,
    _hosts.c.name,
    _hosts.c.token_hash,
    _hosts.c.last_seq,
    _hosts.c.inventory_hash,
    _hosts.c.pending_actions,
    _hosts.c.down_since,
)
_FIND_HOST = select(*_HOST_COLUMNS).where(_hosts.c.token_hash == bindparam("token_hash"))
# Locked: whether to reconcile is decided on the stored digest, which adding a
# pool clears (broker.hosts.store.FORGET_INVENTORIES) in a transaction of its own.
_HOST_BY_ID = select(*_HOST_COLUMNS).where(_hosts.c.id == bindparam("host_id")).with_for_update()

_OPEN_SESSION_ON_DESKTOP = exists().where(_sessions.c.desktop_id == _desktops.c.id, SESSION_OPEN)
_STORED_DESKTOPS = select(
    _desktops.c.id,
    _desktops.c.name,
    _desktops.c.pool_id,
    _desktops.c.power_state,
    _desktops.c.address,
    _desktops.c.port,
    _desktops.c.probe_ok,
    _desktops.c.missing,
    _desktops.c.connections,
    _OPEN_SESSION_ON_DESKTOP.label("in_use"),
).where(_desktops.c.host_id == bindparam("host_id"))


class ClockSkew(VdiError):
    status, code = 400, "clock_skew"


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def authenticate(rt: Runtime, token: str | None, source_ip: str | None) -> KnownHost:
    """The host of a bearer token (401 for anything else), remembered."""
    if token:
        digest = token_hash(token)
        known = rt.report_tokens.get(digest)
        if known is not None:
            return known
        async with rt.db.read_conn() as conn:
            row = (await conn.execute(_FIND_HOST, {"token_hash": digest})).first()
        if row is not None and same(row.token_hash, digest):
            known = KnownHost(row.id, row.name)
            rt.report_tokens.put(digest, known)
            return known
    await _reject(rt, None, source_ip, "unknown_token")
    raise Unauthorized("The agent token is not valid.", code="invalid_token")


def parse(body: bytes) -> Report:
    try:
        return Report.model_validate_json(body)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in exc.errors()[:20]
        ]
        raise InvalidInput(
            "The report does not match the protocol.", extra={"details": details}
        ) from exc


async def ingest(
    rt: Runtime, host: KnownHost, token: str, report: Report, source_ip: str | None
) -> ReportResponse:
    settings = rt.settings
    if report.host != host.name:
        await _reject(rt, host.name, source_ip, "foreign_host", claimed=report.host)
        raise Forbidden("This token belongs to another host.", code="wrong_host")
    now = rt.clock.now()
    skew = abs((report.created_at - now).total_seconds())
    if skew > settings.report_max_clock_skew_s:
        rt.report_refusal_log.log(
            logging.WARNING,
            f"clock_skew:{host.name}",
            "host %s: report refused, its clock is %.0f s off the broker's "
            "(more than %.0f s); the host counts as down until NTP is fixed there",
            host.name,
            (report.created_at - now).total_seconds(),
            settings.report_max_clock_skew_s,
        )
        raise ClockSkew(
            f"The report's time is {skew:.0f} s off the broker's clock; check NTP on the host.",
            extra={"broker_time": now.isoformat()},
        )
    listed = report.desktops_listed
    digest = inventory_digest(report.desktops, settings.pool_rules, listed)
    presented = token_hash(token)
    values = {
        "host_id": host.id,
        "presented_token": presented,
        "reporting_host": host.name,
        "unchanged_inventory": digest,
        "seq": report.seq,
        "now": now,
        "agent_version": report.agent_version,
        "metrics": report.metrics.model_dump_json(exclude_none=True),
        "inventory_hash": digest,
        **figures(report.metrics),
    }
    if not report.action_results:
        pending = await rt.report_batcher.store(values)
        if pending is not None:  # the usual report, stored with others
            out = []
            if pending:
                async with rt.db.write_conn() as conn:
                    out = await actions.deliver(conn, host.id)
            return ReportResponse(actions=out, interval_s=settings.report_interval)
    async with rt.db.write_conn() as conn:
        # Not the usual report: check everything against the database.
        row = (await conn.execute(_HOST_BY_ID, {"host_id": host.id})).first()
        if row is None or not same(row.token_hash, presented):
            rt.report_tokens.forget(presented)
            raise Unauthorized("The agent token is not valid.", code="invalid_token")
        stored = await conn.execute(STORE_REPORT, values)
        if stored.rowcount != 1:
            rt.report_refusal_log.log(
                logging.WARNING,
                f"stale_seq:{host.name}",
                "host %s: report seq %d refused, not newer than the stored seq %s; "
                "if this repeats, a second agent reports with this host's token "
                "(a cloned machine or copied token file)",
                host.name,
                report.seq,
                row.last_seq,
            )
            raise Conflict(
                "This report is not newer than the last one.",
                code="stale_seq",
                extra={"last_seq": row.last_seq},
            )
        if digest != row.inventory_hash:
            await _reconcile(rt, conn, host, report.desktops, listed)
        pending, was_down = row.pending_actions, row.down_since is not None
        finished = []
        if report.action_results:
            finished = await actions.record_results(conn, host.id, report.action_results, now)
            await _apply_results(conn, finished, now)
        out = []
        if pending > len(finished):
            out = await actions.deliver(conn, host.id)
    if was_down:
        log.warning("host %s reports again", host.name)
    for f in finished:
        if f.ok:
            log.info("host %s: %s of %s (%s) done", host.name, f.kind, f.desktop_name, f.reason)
        else:
            # Named with the agent's reason: a desktop whose reset fails stays out of
            # service (vdi_pool_desktops_out_of_service) until one works.
            log.warning(
                "host %s: %s of %s (%s) failed: %s",
                host.name,
                f.kind,
                f.desktop_name,
                f.reason,
                f.error or "no reason given",
            )
    return ReportResponse(actions=out, interval_s=settings.report_interval)


async def _reconcile(
    rt: Runtime, conn: Executor, reporter: KnownHost, reported: list[DesktopReport], listed: bool
) -> None:
    rows = (await conn.execute(_STORED_DESKTOPS, {"host_id": reporter.id})).all()
    pools = {r.name: r.id for r in (await conn.execute(select(_pools.c.id, _pools.c.name))).all()}
    the_plan = plan(
        [_stored(r) for r in rows],
        reported,
        PoolResolver(pools, rt.settings.pool_rules),
        listed,
    )
    now = rt.clock.now()
    if the_plan.inserts:
        await conn.execute(
            _desktops.insert(),
            [
                {
                    "host_id": reporter.id,
                    "pool_id": d.pool_id,
                    "name": d.name,
                    "power_state": d.power_state,
                    "address": d.address,
                    "port": d.port,
                    "probe_ok": d.probe_ok,
                    "connections": d.connections,
                    "missing": False,
                    "needs_reset": False,
                    "idle_since": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for d in the_plan.inserts
            ],
        )
    for change in the_plan.updates:
        values = dict(change.values)
        if "missing" in values:  # how long it has been gone decides when its sessions end
            values["missing_since"] = now if values["missing"] else None
        await conn.execute(
            update(_desktops).where(_desktops.c.id == change.id).values(**values, updated_at=now)
        )
    await apply_moves(conn, now, reporter, the_plan.moves)
    present = (
        select(func.count())
        .select_from(_desktops)
        .where(_desktops.c.host_id == reporter.id, _desktops.c.missing.is_(False))
        .scalar_subquery()
    )
    await conn.execute(
        update(_hosts).where(_hosts.c.id == reporter.id).values(desktop_count=present)
    )
    for conflict in the_plan.conflicts:
        log.warning("host %s: %s", reporter.name, conflict)
    for pool in sorted(the_plan.unknown_pools):
        log.warning(
            "host %s reports desktops for pool %r, which does not exist; "
            "they are registered without a pool",
            reporter.name,
            pool,
        )


async def _apply_results(
    conn: Executor, finished: list[actions.Finished], now: dt.datetime
) -> None:
    """A desktop that was reset after use is clean and free again."""
    clean = [
        f.desktop_id
        for f in finished
        if f.ok and f.kind == ActionKind.RESET and f.desktop_id is not None
    ]
    if clean:
        await conn.execute(
            update(_desktops)
            .where(_desktops.c.id.in_(clean))
            .values(needs_reset=False, idle_since=now)
        )


def _stored(row: Row[tuple[object, ...]]) -> StoredDesktop:
    return StoredDesktop(
        id=row.id,
        name=row.name,
        pool_id=row.pool_id,
        power_state=row.power_state,
        address=row.address,
        port=row.port,
        probe_ok=row.probe_ok,
        missing=row.missing,
        in_use=bool(row.in_use),
        connections=row.connections,
    )


async def _reject(
    rt: Runtime, host: str | None, source_ip: str | None, reason: str, **detail: str
) -> None:
    """Audit a refused report. Past the limit per source address the answer is
    429 and nothing is written: a stranger's flood of forged reports must not
    become a flood of audit rows (each a write transaction)."""
    wait = rt.report_rejects.hit(source_key(source_ip))
    if wait is not None:
        raise RateLimited(
            "Too many refused reports from this address; try again later.",
            headers=retry_after(wait),
        )
    async with rt.db.write_conn() as conn:
        await audit.record(
            conn,
            rt.clock.now(),
            "agent_report_rejected",
            actor=host,
            source_ip=source_ip,
            detail={"reason": reason, **detail},
        )
