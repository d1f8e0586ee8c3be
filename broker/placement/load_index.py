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


def parts(
    cpu_utilization: float | None,
    memory_total: int | None,
    memory_available: int | None,
    sessions: int,
    capacity: int,
    logons: int,
    cfg: LoadIndexSettings,
) -> tuple[float, float, float, float]:
    """(cpu, memory, sessions, logons), each scaled to 0..1. Plain arguments, no
    objects: placement computes this for every host on every request."""
    cpu = 0.0
    if cpu_utilization is not None:
        cpu = _clamp((cpu_utilization - cfg.cpu_idle) / cfg.cpu_span)
    memory = 0.0
    if memory_total and memory_available is not None:
        used = memory_total - memory_available
        base = cfg.memory_base_ratio * memory_total
        span = cfg.memory_full_ratio * memory_total - base
        memory = _clamp((used - base) / span) if span > 0 else 1.0
    # A host without capacity (no desktops yet, an empty static list, capacity
    # set to 0) can take no session, so placement must see it as full. The
    # exported index therefore says 1 too; VdiHostOverloaded ignores such hosts
    # (it requires vdi_host_session_capacity > 0), as nobody on them is slowed.
    session_part = _clamp(sessions / capacity) if capacity > 0 else 1.0
    return cpu, memory, session_part, _clamp(logons / cfg.logon_tolerance)


def components(load: HostLoad, cfg: LoadIndexSettings) -> tuple[float, float, float, float]:
    return parts(
        load.cpu_utilization,
        load.memory_total,
        load.memory_available,
        load.sessions,
        load.capacity,
        load.logons,
        cfg,
    )


def combine(parts: tuple[float, float, float, float], cfg: LoadIndexSettings) -> float:
    """The highest part plus a share of the mean of the others, at most 1."""
    top = max(parts)
    return min(1.0, top + cfg.others_weight * ((sum(parts) - top) / 3))


def index_of(load: HostLoad, cfg: LoadIndexSettings) -> float:
    return combine(components(load, cfg), cfg)


def load_index(load: HostLoad, cfg: LoadIndexSettings) -> LoadIndex:
    parts = components(load, cfg)
    return LoadIndex(*parts, index=combine(parts, cfg))
