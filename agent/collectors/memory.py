"""Memory: total, available (what new desktops can get) and used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agent.collectors.base import Fields


class MemoryReading(Protocol):
    """The part of psutil.virtual_memory()'s result that is reported."""

    @property
    def total(self) -> int: ...
    @property
    def available(self) -> int: ...
    @property
    def used(self) -> int: ...


def psutil_memory() -> MemoryReading:
    import psutil

    reading: MemoryReading = psutil.virtual_memory()
    return reading


class MemoryCollector:
    name = "memory"

    def __init__(self, read: Callable[[], MemoryReading] = psutil_memory) -> None:
        self._read = read

    def collect(self) -> Fields:
        m = self._read()
        return {
            "memory_total_bytes": m.total,
            "memory_available_bytes": m.available,
            "memory_used_bytes": m.used,
        }
