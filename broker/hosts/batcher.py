"""Group commit for the usual agent report.

A transaction costs about as much CPU as three or four statements (begin,
commit, taking and returning a connection), and thousands of agents report
every few seconds. So usual reports that arrive while a batch is being written
wait for the next one and are stored together (Database.scalar_each): one
transaction, one conditional UPDATE per report, and each report still learns
exactly whether its own UPDATE held. Nothing is half stored: a failure of the
transaction fails its whole batch. Where the failure may be one report's fault
rather than the database's (`isolate`), each report of the batch is then stored
on its own, so only the faulty one fails; when the database is away, all fail at
once (each agent retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

Job = tuple[dict[str, Any], "asyncio.Future[int | None]"]


class ReportBatcher:
    def __init__(
        self,
        store_all: Callable[[list[dict[str, Any]]], Awaitable[list[Any]]],
        max_batch: int = 256,
        *,
        isolate: Callable[[Exception], bool] = lambda _exc: True,
        order: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        """`isolate`: whether a failed batch is worth storing report by report;
        `order`: a sort key for the reports of a batch, so that concurrent
        transactions lock rows in one order."""
        self._store_all = store_all
        self._max_batch = max_batch
        self._isolate = isolate
        self._order = order
        self._queue: list[Job] = []
        self._writer: asyncio.Task[None] | None = None

    async def store(self, values: dict[str, Any]) -> int | None:
        """What storing these values returned (None: the conditional write did not hold)."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.append((values, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            if self._order is not None:
                order = self._order
                batch.sort(key=lambda job: order(job[0]))
            await self._run(batch)

    async def _run(self, batch: list[Job]) -> None:
        try:
            results = await self._store_all([values for values, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and self._isolate(exc):
                for job in batch:
                    await self._run([job])
            else:
                _fail(batch, exc)
            return
        except BaseException as exc:  # cancelled: the batch's reports learn it too
            _fail(batch, exc)
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        # Reports the writer never took (it was cancelled before it ran) must not wait forever.
        queued, self._queue = self._queue, []
        for _, future in queued:
            future.cancel()


def _fail(batch: list[Job], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
