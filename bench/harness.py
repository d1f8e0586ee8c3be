"""What every benchmark returns, and how figures are summarised.

A benchmark is a module `bench/bench_<name>.py` with `run(quick: bool) -> list[Figure]`
(a plain function; it may call asyncio.run itself). It measures its own baseline
in the same run (raw argon2, OpenSSH, node_exporter, ...) and reports ratios,
because this machine is shared and absolute numbers drift.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    benchmark: str
    name: str
    value: float
    unit: str
    goal: str | None = None  # e.g. ">= 0.9", "<= 250"
    note: str | None = None

    @property
    def met(self) -> bool | None:
        if not self.goal:
            return None
        op, _, bound = self.goal.partition(" ")
        limit = float(bound)
        return self.value >= limit if op == ">=" else self.value <= limit

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def reference_ms(rounds: int = 5) -> float:
    """How fast this machine runs plain Python right now: the best of `rounds`
    runs of a fixed workload (arithmetic, a dict, a sort), in ms. Stored beside
    each benchmark, so absolute figures from different days can be read against
    the machine they ran on (on this shared VM raw argon2id has run at 95/s one
    day and 52/s another)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        table: dict[int, float] = {}
        for i in range(100_000):
            table[i % 997] = table.get(i % 997, 0.0) + i * 0.5
        sorted(table.values())
        best = min(best, time.perf_counter() - started)
    return best * 1000
