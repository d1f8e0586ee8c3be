"""The load index: one number 0..1 per host, the default placement score.

Following Citrix's load evaluator and OpenUDS's weights: each component is
scaled to 0..1 between "idle" and "full", the index is the highest component
plus a tenth of the mean of the others, capped at 1. So one exhausted resource
makes a host full, and a host busy on every front ranks behind one busy on one.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.config import LoadIndexSettings


@dataclass(frozen=True)
class HostLoad:
    """What the index is computed from; None where the agent has no figure yet."""

    cpu_utilization: float | None
    memory_total: int | None
    memory_available: int | None
    sessions: int
    capacity: int
    logons: int  # pending sessions and assignments the last report cannot show yet


@dataclass(frozen=True)
class LoadIndex:
    cpu: float
    memory: float
    sessions: float
    logons: float
    index: float

    def components(self) -> dict[str, float]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "sessions": self.sessions,
            "logons": self.logons,
        }


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def load_index(load: HostLoad, cfg: LoadIndexSettings) -> LoadIndex:
    cpu = 0.0
    if load.cpu_utilization is not None:
        cpu = _clamp((load.cpu_utilization - cfg.cpu_idle) / cfg.cpu_span)
    memory = 0.0
    if load.memory_total and load.memory_available is not None:
        used = load.memory_total - load.memory_available
        base = cfg.memory_base_ratio * load.memory_total
        span = cfg.memory_full_ratio * load.memory_total - base
        memory = _clamp((used - base) / span) if span > 0 else 1.0
    sessions = _clamp(load.sessions / load.capacity) if load.capacity > 0 else 1.0
    logons = _clamp(load.logons / cfg.logon_tolerance)
    parts = sorted((cpu, memory, sessions, logons), reverse=True)
    index = min(1.0, parts[0] + cfg.others_weight * (sum(parts[1:]) / 3))
    return LoadIndex(cpu, memory, sessions, logons, index)
