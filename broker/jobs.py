"""Background jobs, run by one broker at a time.

Each job is an async function of the runtime with its own interval. The runner
asks the `Leader` (broker.leader) before every round, so with several replicas
only the leader works; a job that fails is logged and tried again next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from broker.runtime import Runtime

log = logging.getLogger(__name__)


# Retention is about days; looking once an hour is plenty.
AUDIT_PURGE_INTERVAL_S = 3600.0


class Leader(Protocol):
    async def is_leader(self) -> bool:
        """True while this process should run the jobs."""
        ...

    async def release(self) -> None: ...


@dataclass
class Job:
    name: str
    run: Callable[[Runtime], Awaitable[None]]
    interval_s: float
    next_at: float = 0.0


class JobRunner:
    def __init__(self, rt: Runtime, jobs: list[Job], leader: Leader, tick_s: float) -> None:
        self.rt = rt
        self.jobs = jobs
        self.leader = leader
        self.tick_s = tick_s
        self.leading = False
        self._task: asyncio.Task[None] | None = None

    async def run_due(self) -> None:
        """One round: every job whose time has come, if we lead."""
        was_leading = self.leading
        self.leading = await self.leader.is_leader()
        if not self.leading:
            return
        if not was_leading:
            # Reports were not stored through us until now (we were starting, a
            # standby, or the database was away): see broker.hosts.monitor.
            self.rt.jobs_since = self.rt.clock.now()
        now = time.monotonic()
        for job in self.jobs:
            if now < job.next_at:
                continue
            job.next_at = now + job.interval_s
            try:
                await job.run(self.rt)
            except Exception:
                log.exception("background job %s failed; retrying next round", job.name)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:
                log.exception("job round failed")
            await asyncio.sleep(self.tick_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="vdi-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.leader.release()


def default_jobs(rt: Runtime) -> list[Job]:
    from broker.audit.retention import purge
    from broker.hosts.monitor import check_hosts
    from broker.sessions.lifecycle import run_lifecycle

    async def purge_job(rt: Runtime) -> None:
        await purge(rt)

    interval = rt.settings.job_interval_s
    return [
        Job("host health", check_hosts, interval),
        Job("lifecycle", run_lifecycle, interval),
        Job("audit retention", purge_job, AUDIT_PURGE_INTERVAL_S),
    ]
