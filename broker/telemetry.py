"""Counters and histograms the broker keeps in memory for /metrics.

Gauges (sessions, capacity, host load) are read from the database on every
scrape by broker.metrics; only event counts live here, per process, as
Prometheus expects from replicas (sum over instances in the queries).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.domain import LoginResult


@dataclass
class Histogram:
    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs ending with +Inf, as exposition needs."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            running += n
            out.append((repr(float(bound)), float(running)))
        out.append(("+Inf", float(self.count)))
        return out


ASSIGNMENT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAUNCH_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 240, 300)
# What a launch that never came up counts as, at least: slower than every bucket,
# so VdiSessionLaunchSlow sees it also where pending_timeout_s is short.
NEVER_LAUNCHED_S = math.nextafter(LAUNCH_BUCKETS[-1], math.inf)


class Telemetry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.logins: Counter[str] = Counter({r.value: 0 for r in LoginResult})
        self.assignments: Counter[tuple[str, str]] = Counter()
        self.assignment_duration = Histogram(ASSIGNMENT_BUCKETS)
        self.launch_duration: dict[str, Histogram] = {}
        # upstream: client to desktop; downstream: desktop to client.
        self.gateway_bytes: Counter[str] = Counter({"upstream": 0, "downstream": 0})
        self.gateway_auth_failures = 0
        self.gateway_tunnels = 0

    def login(self, result: LoginResult) -> None:
        with self._lock:
            self.logins[result.value] += 1

    def assignment(self, pool: str, result: str, seconds: float) -> None:
        with self._lock:
            self.assignments[(pool, result)] += 1
            self.assignment_duration.observe(seconds)

    def launch(self, pool: str, seconds: float) -> None:
        with self._lock:
            self.launch_histogram(pool).observe(seconds)

    def launch_timed_out(self, pool: str, waited: float) -> None:
        """A launch given up after `waited` seconds: it counts above every bucket
        (its wait, or just over the top bucket when it waited less)."""
        self.launch(pool, max(waited, NEVER_LAUNCHED_S))

    def gateway_auth_failed(self) -> None:
        with self._lock:
            self.gateway_auth_failures += 1

    def gateway_traffic(self, upstream: int, downstream: int) -> None:
        """Bytes through tunnels since the last call (the gateway flushes once a tick)."""
        with self._lock:
            self.gateway_bytes["upstream"] += upstream
            self.gateway_bytes["downstream"] += downstream

    def launch_histogram(self, pool: str) -> Histogram:
        return self.launch_duration.setdefault(pool, Histogram(LAUNCH_BUCKETS))
