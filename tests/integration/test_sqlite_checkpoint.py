"""SQLite's WAL checkpoints run in the background (broker.store.checkpoint), not
inside a request's commit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import text

from broker.app import create_app
from broker.audit import log as audit
from broker.clock import FakeClock
from broker.runtime import Runtime, open_runtime
from broker.store.checkpoint import Checkpointer
from broker.store.db import SQLITE_AUTOCHECKPOINT_PAGES
from tests.conftest import make_settings

PAD = "x" * 2000


async def write_pages(rt: Runtime, transactions: int) -> None:
    """Commit `transactions` small write transactions, a few log pages each."""
    for _ in range(transactions):
        async with rt.db.write_conn() as conn:
            for _ in range(5):
                await audit.record(conn, rt.clock.now(), "padding", detail={"pad": PAD})


async def test_commits_leave_the_checkpoint_to_the_background(
    sqlite_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt = await open_runtime(make_settings(tmp_path, sqlite_url), clock=clock)
    try:
        await write_pages(rt, 300)
        checkpointer = Checkpointer(rt.db, interval_s=60)
        done = await checkpointer.run_once()
    finally:
        await rt.close()
    # With SQLite's default a commit checkpointed at 1,000 pages, and the log
    # started again from its beginning.
    assert done.log_frames > 1_000, done
    # The background checkpoint copies the whole log back.
    assert not done.busy
    assert done.copied_frames == done.log_frames


async def test_the_serving_process_checkpoints_every_interval(
    sqlite_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path, sqlite_url, sqlite_checkpoint_interval_s=0.05)
    rt = await open_runtime(settings, clock=clock)
    try:
        app = create_app(settings, runtime=rt)
        async with app.router.lifespan_context(app):
            checkpointer = app.state.checkpointer
            await write_pages(rt, 20)
            deadline = time.monotonic() + 10
            while not (checkpointer.last and checkpointer.last.copied_frames > 0):
                assert time.monotonic() < deadline, "no checkpoint in 10 s"
                await asyncio.sleep(0.05)
            assert checkpointer.last.copied_frames == checkpointer.last.log_frames
        # It stops with the app.
        assert checkpointer._task is None
    finally:
        await rt.close()


async def test_every_connection_keeps_a_larger_automatic_checkpoint_as_a_safety_net(
    sqlite_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """The safety net for processes without the task: every connection keeps the
    automatic checkpoint, at SQLITE_AUTOCHECKPOINT_PAGES instead of SQLite's
    1,000 (0 would turn it off and let the log grow without bound)."""
    rt = await open_runtime(make_settings(tmp_path, sqlite_url), clock=clock)
    try:
        for read in (rt.db.read_conn, rt.db.write_conn):
            async with read() as conn:
                pages = await conn.scalar(text("PRAGMA wal_autocheckpoint"))
            assert pages == SQLITE_AUTOCHECKPOINT_PAGES
    finally:
        await rt.close()
