"""The report batcher: group commit, and one report's failure kept to itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import DataError, OperationalError

from broker.hosts.batcher import ReportBatcher
from broker.store.db_errors import database_down


class FakeStore:
    """Stores batches as Database.scalar_each does: all or nothing. A report
    with `bad` set fails its whole batch, as a value the database refuses would;
    `down` fails every batch, as a database away would."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.stored: list[int] = []
        self.down = False

    async def __call__(self, batch: list[dict[str, Any]]) -> list[Any]:
        self.batches.append([v["host_id"] for v in batch])
        await asyncio.sleep(0)
        if self.down:
            raise OperationalError("UPDATE hosts", None, ConnectionRefusedError())
        if any(v.get("bad") for v in batch):
            raise DataError("UPDATE hosts", None, ValueError("invalid byte sequence"))
        self.stored += [v["host_id"] for v in batch]
        return [v["host_id"] * 10 for v in batch]


def batcher(store: FakeStore) -> ReportBatcher:
    """As broker.runtime builds it."""
    return ReportBatcher(
        store, isolate=lambda exc: not database_down(exc), order=lambda v: v["host_id"]
    )


async def test_reports_arriving_together_are_stored_together_in_host_order() -> None:
    store = FakeStore()
    b = batcher(store)
    results = await asyncio.gather(*(b.store({"host_id": h}) for h in (3, 1, 2, 5, 4)))
    assert results == [30, 10, 20, 50, 40]  # each its own answer
    assert store.batches == [[1, 2, 3, 4, 5]]  # one transaction, rows locked in id order


async def test_a_report_the_database_refuses_fails_alone() -> None:
    store = FakeStore()
    b = batcher(store)
    outcomes = await asyncio.gather(
        *(b.store({"host_id": h, "bad": h == 2}) for h in (1, 2, 3)), return_exceptions=True
    )
    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], DataError)
    assert sorted(store.stored) == [1, 3]
    # The batch failed as a whole, then each report went alone.
    assert store.batches == [[1, 2, 3], [1], [2], [3]]


async def test_when_the_database_is_away_the_batch_fails_at_once() -> None:
    store = FakeStore()
    store.down = True
    b = batcher(store)
    outcomes = await asyncio.gather(
        *(b.store({"host_id": h}) for h in (1, 2, 3)), return_exceptions=True
    )
    assert all(isinstance(o, OperationalError) for o in outcomes)
    # No report by report retry against a database that is not there.
    assert store.batches == [[1, 2, 3]]


@pytest.mark.parametrize("writer_started", [True, False])
async def test_closing_leaves_no_report_waiting(writer_started: bool) -> None:
    gate = asyncio.Event()

    async def stuck(batch: list[dict[str, Any]]) -> list[Any]:
        await gate.wait()
        return [None for _ in batch]

    b = ReportBatcher(stuck)
    waiting = [asyncio.ensure_future(b.store({"host_id": 1}))]
    await asyncio.sleep(0)  # the report is queued, the writer created
    if writer_started:
        await asyncio.sleep(0)  # the writer holds the first report; a second one queues
        waiting.append(asyncio.ensure_future(b.store({"host_id": 2})))
        await asyncio.sleep(0)
    await b.close()
    for report in waiting:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(report, 1)
