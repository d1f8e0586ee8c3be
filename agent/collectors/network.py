"""Cumulative network traffic, errors and drops over all interfaces but loopback."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.collectors.base import Fields

LOOPBACK = "lo"


@dataclass(frozen=True)
class NicCounters:
    bytes_sent: int
    bytes_recv: int
    errin: int
    errout: int
    dropin: int
    dropout: int


def psutil_nics() -> dict[str, NicCounters]:
    import psutil

    # nowrap=False: the kernel's counters are 64-bit here, and psutil's wrap
    # bookkeeping costs more than the read.
    return {
        name: NicCounters(c.bytes_sent, c.bytes_recv, c.errin, c.errout, c.dropin, c.dropout)
        for name, c in psutil.net_io_counters(pernic=True, nowrap=False).items()
    }


def totals(nics: Mapping[str, NicCounters]) -> Fields:
    """protocol.NetworkStats summed over every interface except loopback, whose
    traffic never leaves the host."""
    counted = [c for name, c in nics.items() if name != LOOPBACK]
    return {
        "bytes_sent_total": sum(c.bytes_sent for c in counted),
        "bytes_recv_total": sum(c.bytes_recv for c in counted),
        "errors_in_total": sum(c.errin for c in counted),
        "errors_out_total": sum(c.errout for c in counted),
        "drops_in_total": sum(c.dropin for c in counted),
        "drops_out_total": sum(c.dropout for c in counted),
    }


class NetworkCollector:
    name = "network"

    def __init__(self, nics: Callable[[], Mapping[str, NicCounters]] = psutil_nics) -> None:
        self._nics = nics

    def collect(self) -> Fields:
        return {"network": totals(self._nics())}
