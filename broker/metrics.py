"""Prometheus exposition of the broker: a custom collector built fresh per scrape.

Gauges come from one read of the fleet (broker.fleet, the same aggregates for
every replica); event counters and histograms from this process's telemetry.
Labels are bounded: host, pool, department, state, result, and fixed sets
(resource, component, power_state, work_mode, direction); never a user,
session id or VM uuid. Known label combinations are exported with 0.

A host whose reports are stale keeps its info, last-report timestamp, up and
state series (state is the broker's own knowledge, and alert rules need it to
keep hosts in maintenance quiet); its load, sessions and probe series go.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from agent.protocol import PowerState
from broker import __version__, fleet
from broker.domain import HostState, RefusalCode
from broker.runtime import Runtime
from broker.telemetry import Histogram, Telemetry

# The classic text format (what generate_latest writes), which every Prometheus
# since 2.0 reads; client_python's newer default names a format 2.x does not know.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SESSION_STATES = ("pending", "active", "disconnected")
WORK_MODES = ("home", "field")
RESOURCES = ("cpu", "memory", "io")
COMPONENTS = ("cpu", "memory", "sessions", "logons")
POWER_STATES = (*(p.value for p in PowerState), "missing")
ASSIGNMENT_RESULTS = ("assigned", "reconnected", "pending", *(r.value for r in RefusalCode))


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    family.add_metric(labels, hist.cumulative(), hist.total)


class BrokerCollector(Collector):
    def __init__(self, state: fleet.Fleet, telemetry: Telemetry) -> None:
        self.state = state
        self.telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        yield from self._build()
        yield from self._hosts()
        yield from self._pools()
        yield from self._departments()
        yield from self._events()

    def _build(self) -> Iterator[Metric]:
        build = _gauge("vdi_broker_build_info", "Version of the broker", ["version"])
        build.add_metric([__version__], 1)
        yield build

    def _hosts(self) -> Iterator[Metric]:
        hosts = sorted(self.state.hosts.values(), key=lambda h: h.name)
        info = _gauge(
            "vdi_host_info", "Registered host and its agent version", ["host", "agent_version"]
        )
        last = _gauge(
            "vdi_host_last_report_timestamp_seconds",
            "Unix time of the host's last report",
            ["host"],
        )
        up = _gauge("vdi_host_up", "1 while the host's reports are fresh", ["host"])
        state = _gauge("vdi_host_state", "Administrative state of the host", ["host", "state"])
        cpu = _gauge(
            "vdi_host_cpu_utilization_ratio", "CPU busy share over the last cycle", ["host"]
        )
        cpus = _gauge("vdi_host_cpus", "Logical CPUs", ["host"])
        load1 = _gauge("vdi_host_load1", "1-minute load average", ["host"])
        mem_total = _gauge("vdi_host_memory_total_bytes", "Memory", ["host"])
        mem_avail = _gauge("vdi_host_memory_available_bytes", "Memory available", ["host"])
        pressure = _gauge(
            "vdi_host_pressure_ratio", 'PSI "some" avg10 as a ratio', ["host", "resource"]
        )
        index = _gauge("vdi_host_load_index_ratio", "Placement score 0..1", ["host"])
        component = _gauge(
            "vdi_host_load_component_ratio", "Parts of the load index", ["host", "component"]
        )
        sessions = _gauge("vdi_host_sessions", "Open sessions on the host", ["host", "state"])
        capacity = _gauge("vdi_host_session_capacity", "Sessions the host can run", ["host"])
        probes = CounterMetricFamily(
            "vdi_host_probes", "Console-port probes by the agent", labels=["host"]
        )
        timeouts = CounterMetricFamily(
            "vdi_host_probe_timeouts", "Console-port probes that timed out", labels=["host"]
        )
        latency = _gauge(
            "vdi_host_probe_latency_seconds", "Mean probe latency of the last round", ["host"]
        )
        for h in hosts:
            info.add_metric([h.name, h.agent_version or ""], 1)
            if h.last_report_at is not None:
                last.add_metric([h.name], h.last_report_at.timestamp())
            up.add_metric([h.name], 1 if h.up else 0)
            for admin_state in HostState:
                state.add_metric([h.name, admin_state.value], int(h.state == admin_state.value))
            if not h.up:
                continue
            m = h.metrics or {}
            _maybe(cpu, h.name, m.get("cpu_utilization_ratio"))
            _maybe(cpus, h.name, m.get("cpus"))
            _maybe(load1, h.name, m.get("load1"))
            _maybe(mem_total, h.name, m.get("memory_total_bytes"))
            _maybe(mem_avail, h.name, m.get("memory_available_bytes"))
            for resource, value in sorted((m.get("pressure") or {}).items()):
                if resource in RESOURCES and value is not None:
                    pressure.add_metric([h.name, resource], value)
            if h.load is not None:
                index.add_metric([h.name], h.load.index)
                for name, value in h.load.components().items():
                    component.add_metric([h.name, name], value)
            for s in SESSION_STATES:
                sessions.add_metric([h.name, s], h.sessions.get(s, 0))
            capacity.add_metric([h.name], h.capacity)
            probe_stats = m.get("probes") or {}
            probes.add_metric([h.name], probe_stats.get("probes_total", 0))
            timeouts.add_metric([h.name], probe_stats.get("timeouts_total", 0))
            _maybe(latency, h.name, probe_stats.get("latency_mean_s"))
        yield from (
            info,
            last,
            up,
            state,
            cpu,
            cpus,
            load1,
            mem_total,
            mem_avail,
            pressure,
            index,
            component,
            sessions,
            capacity,
            probes,
            timeouts,
            latency,
        )

    def _pools(self) -> Iterator[Metric]:
        pools = sorted(self.state.pools.values(), key=lambda p: p.name)
        sessions = _gauge("vdi_sessions", "Open sessions", ["pool", "state", "work_mode"])
        desktops = _gauge("vdi_pool_desktops", "Desktops by power state", ["pool", "power_state"])
        licences = _gauge("vdi_pool_max_sessions", "Licence limit of the pool", ["pool"])
        usable = _gauge(
            "vdi_pool_capacity_sessions",
            "Sessions the pool can hold now (licences bounded by desktops on "
            "accepting, fresh hosts)",
            ["pool"],
        )
        utilization = _gauge(
            "vdi_pool_utilization_ratio", "Sessions over usable capacity", ["pool"]
        )
        without = _gauge(
            "vdi_pool_capacity_without_largest_host",
            "Usable capacity if the pool's largest host failed",
            ["pool"],
        )
        for p in pools:
            for s in SESSION_STATES:
                for mode in WORK_MODES:
                    sessions.add_metric([p.name, s, mode], p.sessions.get((s, mode), 0))
            for power in POWER_STATES:
                desktops.add_metric([p.name, power], p.power.get(power, 0))
            licences.add_metric([p.name], p.max_sessions)
            usable.add_metric([p.name], p.usable)
            utilization.add_metric([p.name], p.utilization)
            without.add_metric([p.name], p.without_largest_host)
        yield from (sessions, desktops, licences, usable, utilization, without)

    def _departments(self) -> Iterator[Metric]:
        remote = _gauge("vdi_department_remote_sessions", "Open home sessions", ["department"])
        limit = _gauge(
            "vdi_department_remote_limit", "Cap on simultaneous home sessions", ["department"]
        )
        for d in sorted(self.state.departments.values(), key=lambda d: d.name):
            remote.add_metric([d.name], d.remote_sessions)
            if d.limit is not None:
                limit.add_metric([d.name], d.limit)
        yield from (remote, limit)

    def _events(self) -> Iterator[Metric]:
        t = self.telemetry
        logins = CounterMetricFamily("vdi_logins", "Login attempts by result", labels=["result"])
        for result, count in sorted(t.logins.items()):
            logins.add_metric([result], count)
        yield logins
        pools = sorted(p.name for p in self.state.pools.values())
        assignments = CounterMetricFamily(
            "vdi_assignments", "Session requests by outcome", labels=["pool", "result"]
        )
        for pool in pools:
            for result in ASSIGNMENT_RESULTS:
                assignments.add_metric([pool, result], t.assignments.get((pool, result), 0))
        yield assignments
        decision = HistogramMetricFamily(
            "vdi_assignment_duration_seconds", "Broker decision time of a session request"
        )
        _histogram(decision, [], t.assignment_duration)
        yield decision
        launch = HistogramMetricFamily(
            "vdi_session_launch_duration_seconds",
            "From request to an active session",
            labels=["pool"],
        )
        for pool in pools:
            _histogram(launch, [pool], t.launch_histogram(pool))
        yield launch
        tunnels = _gauge("vdi_gateway_tunnels", "Open SSH tunnels on this broker")
        tunnels.add_metric([], t.gateway_tunnels)
        yield tunnels
        traffic = CounterMetricFamily(
            "vdi_gateway_bytes", "Bytes through the gateway", labels=["direction"]
        )
        for direction, count in sorted(t.gateway_bytes.items()):
            traffic.add_metric([direction], count)
        yield traffic
        failures = CounterMetricFamily(
            "vdi_gateway_auth_failures", "Failed gateway authentications"
        )
        failures.add_metric([], t.gateway_auth_failures)
        yield failures


def _maybe(family: GaugeMetricFamily, host: str, value: float | None) -> None:
    if value is not None:
        family.add_metric([host], value)


async def render(rt: Runtime) -> bytes:
    """The exposition text of one scrape."""
    state = await fleet.read(rt)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(state, rt.telemetry))
    return generate_latest(registry)
