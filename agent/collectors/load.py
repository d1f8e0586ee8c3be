"""Load averages over 1, 5 and 15 minutes."""

from __future__ import annotations

import os
from collections.abc import Callable

from agent.collectors.base import Fields


class LoadCollector:
    name = "load"

    def __init__(self, loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg) -> None:
        self._loadavg = loadavg

    def collect(self) -> Fields:
        load1, load5, load15 = self._loadavg()
        return {"load1": max(0.0, load1), "load5": max(0.0, load5), "load15": max(0.0, load15)}
