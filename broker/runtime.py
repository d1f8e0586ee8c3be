"""Everything a running broker holds, built once from the settings.

The HTTP app, the CLI, the gateway and the background jobs all get their
dependencies from one `Runtime`, so tests can build one with a fake clock and a
database of their own.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field

from broker.auth.ldap import Directory
from broker.auth.passwords import PasswordHasher
from broker.auth.ratelimit import SlidingWindowLimiter
from broker.cache import TtlCache
from broker.clock import Clock, SystemClock
from broker.config import Settings
from broker.dirs import ensure_dir
from broker.hosts.batcher import ReportBatcher
from broker.hosts.known import TokenCache
from broker.hosts.store import STORE_USUAL_REPORT
from broker.logthrottle import LogThrottle
from broker.placement.model import PoolDesktops
from broker.security.crypto import SecretBox
from broker.sessions.host_board import HostBoard
from broker.sessions.host_views import HostViews
from broker.store import migrate
from broker.store.db import Database
from broker.store.db_errors import database_down
from broker.telemetry import Telemetry

log = logging.getLogger(__name__)

# How long a process reuses a pool's desktops-per-host counts (placement).
POOL_DESKTOPS_TTL_S = 2.0
# How long a process ranks hosts by the hosts it last read (placement).
HOST_BOARD_TTL_S = 2.0


@dataclass
class Runtime:
    settings: Settings
    db: Database
    clock: Clock
    box: SecretBox
    hasher: PasswordHasher
    login_limiter: SlidingWindowLimiter
    # Rate-limited logins audited per source address (broker.auth.login).
    login_refusal_audits: SlidingWindowLimiter
    # Refused agent reports per source address (broker.hosts.ingest).
    report_rejects: SlidingWindowLimiter
    telemetry: Telemetry = field(default_factory=Telemetry)
    # LDAP / Active Directory, when configured (settings.ldap.url).
    directory: Directory | None = None
    # SHA256 fingerprint of the SSH gateway's host key, shown to users to check.
    gateway_fingerprint: str | None = None
    report_tokens: TokenCache = field(default_factory=TokenCache)
    report_batcher: ReportBatcher = field(init=False)
    # pool id -> desktops per host, for placement's capacity estimates.
    pool_desktops: TtlCache[int, dict[int, PoolDesktops]] = field(
        default_factory=lambda: TtlCache(POOL_DESKTOPS_TTL_S)
    )
    # Placement's host views, kept across requests (broker.sessions.host_views).
    host_views: HostViews = field(init=False)
    # The hosts placement ranks by, kept for a moment (broker.sessions.host_board).
    host_board: HostBoard = field(default_factory=lambda: HostBoard(HOST_BOARD_TTL_S))
    # When this process last began to run the background jobs (broker.jobs): it
    # took the lock at start, after the leader died, or after the database was
    # away. Before then nobody here could store reports, so a host's silence
    # counts only from this moment (broker.hosts.monitor). None: not tracked.
    jobs_since: dt.datetime | None = None
    # When the last host check that got through began (broker.hosts.monitor): a
    # gap of a whole down-window means the rounds hung or failed meanwhile, an
    # outage that the jobs lock outlived; silence then counts anew, as after a lead.
    hosts_checked_at: dt.datetime | None = None
    # Refused agent reports come every interval from each host affected: one log
    # line per host and cause now and then (broker.hosts.ingest).
    report_refusal_log: LogThrottle = field(
        default_factory=lambda: LogThrottle(logging.getLogger("broker.hosts.ingest"), 300.0)
    )

    def __post_init__(self) -> None:
        self.host_views = HostViews(self.settings.load_index)
        self.report_batcher = ReportBatcher(
            lambda batch: self.db.scalar_each(STORE_USUAL_REPORT, batch),
            # One report's bad value must not fail the other hosts' reports.
            isolate=lambda exc: not database_down(exc),
            # Host rows in id order, as FORGET_INVENTORIES locks them.
            order=lambda values: values["host_id"],
        )

    async def close(self) -> None:
        await self.report_batcher.close()
        self.hasher.close()
        await self.db.dispose()


def prepare_data_dir(settings: Settings) -> None:
    ensure_dir(settings.data_dir, "the data directory", mode=0o700)


async def open_runtime(
    settings: Settings, *, clock: Clock | None = None, migrate_schema: bool = True
) -> Runtime:
    """Create the data directory and key file if needed, connect, migrate."""
    prepare_data_dir(settings)
    clock = clock or SystemClock()
    box = SecretBox.from_file(settings.key_file, create=True)
    db = Database(settings.effective_database_url)
    if migrate_schema:
        await migrate.upgrade(db)
    hasher = PasswordHasher(
        memory_kib=settings.argon2_memory_kib,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
        threads=settings.argon2_threads or os.cpu_count() or 1,
    )

    def seconds() -> float:
        return clock.now().timestamp()

    limiter = SlidingWindowLimiter(
        settings.login_rate_limit, settings.login_rate_window_s, now=seconds
    )
    login_refusal_audits = SlidingWindowLimiter(
        settings.login_rate_limit, settings.login_rate_window_s, now=seconds
    )
    report_rejects = SlidingWindowLimiter(
        settings.report_reject_limit, settings.report_reject_window_s, now=seconds
    )
    directory = Directory(settings.ldap) if settings.ldap.url else None
    return Runtime(
        settings=settings,
        db=db,
        clock=clock,
        box=box,
        hasher=hasher,
        login_limiter=limiter,
        login_refusal_audits=login_refusal_audits,
        report_rejects=report_rejects,
        directory=directory,
    )
