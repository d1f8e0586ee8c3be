"""What the agent knows about its own work, for its metrics (agent.metrics).

A frozen snapshot that the report loop replaces as a whole after each step; the
metrics server's thread only ever reads a finished one. Kept apart from
agent.metrics so that the loop does not import prometheus-client unless metrics
are served.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CollectorHealth:
    name: str
    success: bool
    duration_s: float


@dataclass(frozen=True)
class Telemetry:
    collectors: tuple[CollectorHealth, ...] = ()
    reports_sent: int = 0
    reports_failed: int = 0
    backlog: int = 0  # action results waiting for delivery
    last_success_timestamp: float = 0.0  # 0: no report delivered yet
    desktops: dict[str, int] = field(default_factory=dict)  # by power state
