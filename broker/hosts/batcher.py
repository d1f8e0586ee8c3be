"""Group commit for the usual agent report.

A transaction costs about as much CPU as three or four statements (begin,
commit, taking and returning a connection), and thousands of agents report
every few seconds. So usual reports that arrive while a batch is being written
wait for the next one and are stored together (Database.scalar_each): one
transaction, one conditional UPDATE per report, and each report still learns
exactly whether its own UPDATE held. A failure fails every report of the batch
(each agent retries); nothing is half stored.
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
    ) -> None:
        self._store_all = store_all
        self._max_batch = max_batch
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
            try:
                results = await self._store_all([values for values, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
