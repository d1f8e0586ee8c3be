"""What a collector is, and how one runs without taking the others down.

A collector returns a fragment of the report's `metrics` object: a dict keyed by
protocol.HostMetrics field names. The runner merges the fragments of all
collectors that succeeded. As in node_exporter, a collector that raises is
recorded as failed (with its error) and the others still report.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.protocol_base import ERROR_MAX_LENGTH, one_line

Fields = dict[str, Any]


class Collector(Protocol):
    name: str

    def collect(self) -> Fields:
        """A fragment of protocol.HostMetrics, by field name."""
        ...


@dataclass(frozen=True)
class Outcome:
    """One collector's run: protocol.CollectorStatus plus the fields it produced."""

    name: str
    success: bool
    duration_s: float
    error: str | None = None
    fields: Fields = field(default_factory=dict)

    def status(self) -> Fields:
        """As protocol.CollectorStatus."""
        status: Fields = {
            "name": self.name,
            "success": self.success,
            "duration_s": round(self.duration_s, 6),
        }
        if self.error is not None:
            status["error"] = self.error
        return status


def describe_error(exc: BaseException) -> str:
    """A one-line error text that fits the protocol's limit."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return one_line(text, ERROR_MAX_LENGTH)


@dataclass
class Run:
    """A collector run in progress; `isolated` fills in the outcome."""

    name: str
    fields: Fields = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0

    def outcome(self) -> Outcome:
        if self.error is not None:
            return Outcome(self.name, False, self.duration_s, self.error)
        return Outcome(self.name, True, self.duration_s, fields=self.fields)


@contextlib.contextmanager
def isolated(name: str, clock: Callable[[], float] = time.perf_counter) -> Iterator[Run]:
    """Time the block and turn any exception in it into a recorded failure. A
    context manager rather than a call, so async collection (the hypervisor,
    the probes) is isolated the same way as the plain collectors."""
    run = Run(name)
    started = clock()
    try:
        yield run
    except Exception as exc:  # isolation is the point: any failure is recorded
        run.error = describe_error(exc)
    finally:
        run.duration_s = clock() - started


def run_isolated(collector: Collector, clock: Callable[[], float] = time.perf_counter) -> Outcome:
    """Run one collector; an exception becomes a failed Outcome, never propagates."""
    with isolated(collector.name, clock) as run:
        run.fields = collector.collect()
    return run.outcome()


def merge(outcomes: Iterable[Outcome]) -> Fields:
    """The metrics object: the fields of every successful collector, plus all statuses."""
    metrics: Fields = {}
    statuses = []
    for outcome in outcomes:
        metrics.update(outcome.fields)
        statuses.append(outcome.status())
    metrics["collectors"] = statuses
    return metrics


@dataclass(frozen=True)
class CollectorChanges:
    """How the collectors' failures changed in one cycle."""

    failing: dict[str, str]  # collector name -> error, after this cycle
    started: tuple[tuple[str, str], ...]  # newly failing, or failing with a new error
    ended: tuple[str, ...]  # succeeding again


def collector_changes(before: Mapping[str, str], outcomes: Iterable[Outcome]) -> CollectorChanges:
    """Compare a cycle's outcomes with the failures of the cycle before, so the
    journal names a collector when it starts failing and when it works again,
    not every cycle."""
    outcomes = list(outcomes)
    now = {o.name: o.error or "failed" for o in outcomes if not o.success}
    return CollectorChanges(
        failing=now,
        started=tuple((name, e) for name, e in now.items() if before.get(name) != e),
        ended=tuple(o.name for o in outcomes if o.success and o.name in before),
    )


def clamp_ratio(value: float) -> float:
    """Rounding in the kernel's or psutil's arithmetic can step just outside 0..1."""
    return min(1.0, max(0.0, value))
