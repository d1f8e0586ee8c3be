"""CPU utilisation over the last cycle, and the number of logical CPUs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.collectors.base import Fields, clamp_ratio


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU time since boot, summed over all CPUs, in seconds."""

    total: float
    idle: float  # idle plus iowait: time no task ran


def psutil_sample() -> CpuSample:
    import psutil

    t = psutil.cpu_times()
    # guest and guest_nice are already counted in user and nice (as psutil does).
    guest = getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return CpuSample(total=sum(t) - guest, idle=idle)


def psutil_count() -> int | None:
    import psutil

    return psutil.cpu_count(logical=True)


def utilisation(previous: CpuSample, current: CpuSample) -> float | None:
    """The busy share of CPU time between two samples; None when no time passed."""
    elapsed = current.total - previous.total
    if elapsed <= 0:
        return None
    busy = elapsed - (current.idle - previous.idle)
    return clamp_ratio(busy / elapsed)


class CpuCollector:
    """Keeps the previous sample: the first cycle has nothing to compare with and
    reports None, like psutil.cpu_percent's first call."""

    name = "cpu"

    def __init__(
        self,
        sample: Callable[[], CpuSample] = psutil_sample,
        count: Callable[[], int | None] = psutil_count,
    ) -> None:
        self._sample = sample
        self._count = count
        self._previous: CpuSample | None = None

    def collect(self) -> Fields:
        current = self._sample()
        previous, self._previous = self._previous, current
        ratio = None if previous is None else utilisation(previous, current)
        return {"cpu_utilization_ratio": ratio, "cpus": self._count()}
