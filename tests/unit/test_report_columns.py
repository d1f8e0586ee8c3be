"""What a valid report may carry fits the columns it is stored in: a value the
protocol accepts and the database refuses would be a 500 (or, in a batch of usual
reports, a failure for other hosts too), not a 422."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import BigInteger, Column, Integer, String

from agent import protocol
from broker.store.tables import Desktop, Host, HostAction, table

INT32 = 2**31 - 1
INT64 = 2**63 - 1

DESKTOP = {"name": "a", "power_state": "running"}
REPORT = {
    "host": "h",
    "agent_version": "1",
    "seq": 1,
    "created_at": "2026-03-02T09:00:00Z",
    "interval_s": 10,
    "metrics": {},
}


def largest(model: type[BaseModel], field: str, base: dict[str, Any], candidates: list[Any]) -> Any:
    """The largest of `candidates` (ascending) the model accepts in `field`."""
    accepted = None
    for value in candidates:
        try:
            model.model_validate({**base, field: value})
        except ValidationError:
            break
        accepted = value
    return accepted


def column_max(column: Column[Any]) -> int:
    if isinstance(column.type, BigInteger):
        return INT64
    assert isinstance(column.type, Integer)
    return INT32


@pytest.mark.parametrize(
    ("model", "field", "base", "column"),
    [
        (protocol.DesktopReport, "connections", DESKTOP, table(Desktop).c.connections),
        (protocol.DesktopReport, "port", DESKTOP, table(Desktop).c.port),
        (protocol.HostMetrics, "cpus", {}, table(Host).c.cpus),
        (protocol.HostMetrics, "session_capacity", {}, table(Host).c.session_capacity),
        (protocol.HostMetrics, "memory_total_bytes", {}, table(Host).c.memory_total),
        (protocol.HostMetrics, "memory_available_bytes", {}, table(Host).c.memory_available),
        (protocol.ProbeStats, "probes_total", {}, table(Host).c.probes_total),
        (protocol.ProbeStats, "timeouts_total", {}, table(Host).c.probe_timeouts_total),
        (protocol.Report, "seq", REPORT, table(Host).c.last_seq),
    ],
)
def test_integers_fit_their_columns(
    model: type[BaseModel], field: str, base: dict[str, Any], column: Column[Any]
) -> None:
    edges = sorted({2**15 - 1, 2**16, INT32, INT32 + 1, 2**62, INT64, INT64 + 1})
    accepted = largest(model, field, base, [1, *edges])
    assert accepted is not None and accepted <= column_max(column)


@pytest.mark.parametrize(
    ("model", "field", "base", "column"),
    [
        (protocol.Report, "host", REPORT, table(Host).c.name),
        (protocol.Report, "agent_version", REPORT, table(Host).c.agent_version),
        (protocol.DesktopReport, "name", DESKTOP, table(Desktop).c.name),
        (protocol.ActionResult, "error", {"id": "a", "ok": False}, table(HostAction).c.error),
    ],
)
def test_texts_fit_their_columns(
    model: type[BaseModel], field: str, base: dict[str, Any], column: Column[Any]
) -> None:
    assert isinstance(column.type, String) and column.type.length is not None
    accepted = largest(model, field, base, ["a" * n for n in range(1, 1025)])
    assert accepted is not None and len(accepted) <= column.type.length


def test_addresses_fit_their_column() -> None:
    length = table(Desktop).c.address.type.length
    longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    address = protocol.DesktopReport(**DESKTOP, address=longest).address
    assert address is not None and len(address) <= length
    # A zone id would make an address as long as anyone likes: refused.
    with pytest.raises(ValidationError):
        protocol.DesktopReport(**DESKTOP, address="fe80::1%" + "x" * length)
