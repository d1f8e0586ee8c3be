"""Pressure stall information: the share of time some task waited for CPU, memory
or I/O over the last 10 s ("some avg10"), from /proc/pressure.

A kernel without PSI (older than 4.20, or booted with psi=0) is reported as
pressure_available=False, which is a fact about the host, not a failure.
"""

from __future__ import annotations

import errno
from pathlib import Path

from agent.collectors.base import Fields, clamp_ratio
from agent.procfs import read_kernel_file

RESOURCES = ("cpu", "memory", "io")
# Errors that mean "this kernel has no PSI" rather than "reading failed".
_NO_PSI = frozenset({errno.ENOENT, errno.EOPNOTSUPP, errno.ENOTSUP})


class MalformedPressure(ValueError):
    pass


def parse_some_avg10(text: str) -> float:
    """The "some avg10" value of a /proc/pressure file, as a ratio 0..1 (the file
    gives percent)."""
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind != "some":
            continue
        for pair in rest.split():
            key, _, value = pair.partition("=")
            if key == "avg10":
                try:
                    return clamp_ratio(float(value) / 100.0)
                except ValueError as exc:
                    raise MalformedPressure(f"avg10 is not a number: {value!r}") from exc
    raise MalformedPressure("no 'some avg10=' entry")


class PressureCollector:
    name = "pressure"

    def __init__(self, proc: Path | str = "/proc") -> None:
        self._dir = Path(proc) / "pressure"

    def _read(self, resource: str) -> str | None:
        try:
            return read_kernel_file(self._dir / resource)
        except OSError as exc:
            if exc.errno in _NO_PSI:
                return None
            raise

    def collect(self) -> Fields:
        values: dict[str, float] = {}
        for resource in RESOURCES:
            text = self._read(resource)
            if text is not None:
                values[resource] = parse_some_avg10(text)
        if not values:
            return {"pressure_available": False, "pressure": None}
        return {"pressure_available": True, "pressure": values}
