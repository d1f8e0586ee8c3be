"""The statements that store an agent's report on its host row.

Kept apart from broker.hosts.ingest so the runtime can build the report batcher
around them without importing the request handling.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from agent.protocol import HostMetrics, PressureStats
from broker.store.tables import Host, table
from broker.store.types import EncodedJSON

_hosts = table(Host)

# Host columns copied from each report's metrics (see tables.Host).
FIGURES = (
    "cpu_ratio",
    "cpus",
    "load1",
    "memory_total",
    "memory_available",
    "pressure_cpu",
    "pressure_memory",
    "pressure_io",
    "probes_total",
    "probe_timeouts_total",
    "probe_latency_s",
    "session_capacity",
)


def figures(m: HostMetrics) -> dict[str, float | int | None]:
    """The report's figures under the host's column names."""
    pressure = m.pressure or PressureStats()
    return {
        "cpu_ratio": m.cpu_utilization_ratio,
        "cpus": m.cpus,
        "load1": m.load1,
        "memory_total": m.memory_total_bytes,
        "memory_available": m.memory_available_bytes,
        "pressure_cpu": pressure.cpu,
        "pressure_memory": pressure.memory,
        "pressure_io": pressure.io,
        "probes_total": m.probes.probes_total,
        "probe_timeouts_total": m.probes.timeouts_total,
        "probe_latency_s": m.probes.latency_mean_s,
        "session_capacity": m.session_capacity,
    }


STORE_REPORT = (
    update(_hosts)
    .where(
        _hosts.c.id == bindparam("host_id"),
        (_hosts.c.last_seq.is_(None)) | (_hosts.c.last_seq < bindparam("seq")),
    )
    .values(
        last_seq=bindparam("seq"),
        last_report_at=bindparam("now"),
        agent_version=bindparam("agent_version"),
        metrics=bindparam("metrics", type_=EncodedJSON()),
        inventory_hash=bindparam("inventory_hash"),
        down_since=None,
        **{column: bindparam(column) for column in FIGURES},
    )
)

# The usual report, stored only if everything but the metrics is as before.
STORE_USUAL_REPORT = STORE_REPORT.where(
    _hosts.c.token_hash == bindparam("presented_token"),
    _hosts.c.name == bindparam("reporting_host"),
    _hosts.c.inventory_hash == bindparam("unchanged_inventory"),
    _hosts.c.down_since.is_(None),
).returning(_hosts.c.pending_actions)

# Which pool a reported desktop belongs in was decided against the pools of the
# time, and the usual report (above) does not decide it again while the inventory
# digest holds. So whatever changes which pool a name resolves to (a pool added)
# runs this in its own transaction: every host's next report, on whichever
# replica, misses the usual path and reconciles its desktops. The rows are locked
# in id order, as the report batcher writes them, so the two cannot deadlock.
FORGET_INVENTORIES = (
    update(_hosts)
    .where(
        _hosts.c.id.in_(
            select(_hosts.c.id)
            .where(_hosts.c.inventory_hash.is_not(None))
            .order_by(_hosts.c.id)
            .with_for_update()
        )
    )
    .values(inventory_hash=None)
)
