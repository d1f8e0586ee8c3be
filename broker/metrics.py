"""Prometheus exposition of the broker: a custom collector built fresh per scrape.

Gauges come from one read of the fleet (broker.fleet, the same aggregates for
every replica); event counters and histograms from this process's telemetry.
Labels are bounded: host, pool, department, state, result, and fixed sets
(resource, component, power_state, work_mode, direction); never a user,
session id or VM uuid. Known label combinations are exported with 0.

A host whose reports are stale keeps what the broker itself knows: info,
last-report timestamp, up, state (alert rules need it to keep hosts in
maintenance quiet), its sessions (those stranded on a silent host are what
ops need to see) and capacity, and its probe counters at their last value (so
that rate() does not lose them). Its load, pressure and probe latency go: they
describe a moment long past.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from agent.protocol import PowerState
from broker import __version__, exposition, fleet
from broker.domain import HostState, RefusalCode
from broker.exposition import Family, escape
from broker.runtime import Runtime
from broker.telemetry import Histogram, Telemetry

# The classic text format, which every Prometheus since 2.0 reads;
# client_python's newer default names a format 2.x does not know.
CONTENT_TYPE = exposition.CONTENT_TYPE
SESSION_STATES = ("pending", "active", "disconnected")
WORK_MODES = ("home", "field")
RESOURCES = ("cpu", "memory", "io")
COMPONENTS = ("cpu", "memory", "sessions", "logons")
POWER_STATES = (*(p.value for p in PowerState), "missing")
# Per-host gauges that are one report figure each: (name, help, figure).
HOST_FIGURES = (
    ("vdi_host_cpu_utilization_ratio", "CPU busy share over the last cycle", "cpu_ratio"),
    ("vdi_host_cpus", "Logical CPUs", "cpus"),
    ("vdi_host_load1", "1-minute load average", "load1"),
    ("vdi_host_memory_total_bytes", "Memory", "memory_total"),
    ("vdi_host_memory_available_bytes", "Memory available", "memory_available"),
)
ASSIGNMENT_RESULTS = ("assigned", "reconnected", "pending", *(r.value for r in RefusalCode))


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Family:
    return Family(name, "gauge", doc, tuple(labels))


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> Family:
    return Family(name, "counter", doc, tuple(labels))


def _histogram(family: Family, labels: list[str], hist: Histogram) -> None:
    family.add_histogram(labels, hist.cumulative(), hist.total)


class BrokerCollector(Collector):
    def __init__(self, state: fleet.Fleet, telemetry: Telemetry) -> None:
        self.state = state
        self.telemetry = telemetry

    def families(self) -> Iterator[Family]:
        yield from self._build()
        yield from self._hosts()
        yield from self._pools()
        yield from self._departments()
        yield from self._events()

    def collect(self) -> Iterator[Metric]:
        for family in self.families():
            yield family.to_metric()

    def _build(self) -> Iterator[Family]:
        build = _gauge("vdi_broker_build_info", "Version of the broker", ["version"])
        build.add([__version__], 1)
        yield build

    def _hosts(self) -> Iterator[Family]:
        # Comprehensions over hosts, not calls per series: at 2,000 hosts this
        # method produces ~50,000 series per scrape.
        hosts = sorted(self.state.hosts.values(), key=lambda h: h.name)
        fresh = [h for h in hosts if h.up]
        info = _gauge(
            "vdi_host_info", "Registered host and its agent version", ["host", "agent_version"]
        )
        info.extend(((h.name, escape(h.agent_version or "")), 1) for h in hosts)
        last = _gauge(
            "vdi_host_last_report_timestamp_seconds",
            "Unix time of the host's last report",
            ["host"],
        )
        last.extend(((h.name,), h.last_report_at.timestamp()) for h in hosts if h.last_report_at)
        up = _gauge("vdi_host_up", "1 while the host's reports are fresh", ["host"])
        up.extend(((h.name,), int(h.up)) for h in hosts)
        state = _gauge("vdi_host_state", "Administrative state of the host", ["host", "state"])
        state.extend(((h.name, s.value), int(h.state == s.value)) for h in hosts for s in HostState)
        yield from (info, last, up, state)

        for name, doc, figure in HOST_FIGURES:
            family = _gauge(name, doc, ["host"])
            family.extend(
                ((h.name,), h.figures[figure]) for h in fresh if h.figures[figure] is not None
            )
            yield family
        pressure = _gauge(
            "vdi_host_pressure_ratio", 'PSI "some" avg10 as a ratio', ["host", "resource"]
        )
        pressure.extend(
            ((h.name, r), h.figures[f"pressure_{r}"])
            for h in fresh
            for r in RESOURCES
            if h.figures[f"pressure_{r}"] is not None
        )
        index = _gauge("vdi_host_load_index_ratio", "Placement score 0..1", ["host"])
        index.extend(((h.name,), h.load.index) for h in fresh if h.load)
        component = _gauge(
            "vdi_host_load_component_ratio", "Parts of the load index", ["host", "component"]
        )
        component.extend(
            ((h.name, c), v) for h in fresh if h.load for c, v in h.load.components().items()
        )
        sessions = _gauge("vdi_host_sessions", "Open sessions on the host", ["host", "state"])
        sessions.extend(((h.name, s), h.sessions.get(s, 0)) for h in hosts for s in SESSION_STATES)
        capacity = _gauge("vdi_host_session_capacity", "Sessions the host can run", ["host"])
        capacity.extend(((h.name,), h.capacity) for h in hosts)
        probes = _counter("vdi_host_probes", "Console-port probes by the agent", ["host"])
        probes.extend(((h.name,), h.figures["probes_total"] or 0) for h in hosts)
        timeouts = _counter(
            "vdi_host_probe_timeouts", "Console-port probes that timed out", ["host"]
        )
        timeouts.extend(((h.name,), h.figures["probe_timeouts_total"] or 0) for h in hosts)
        latency = _gauge(
            "vdi_host_probe_latency_seconds", "Mean probe latency of the last round", ["host"]
        )
        latency.extend(
            ((h.name,), h.figures["probe_latency_s"])
            for h in fresh
            if h.figures["probe_latency_s"] is not None
        )
        yield from (pressure, index, component, sessions, capacity, probes, timeouts, latency)

    def _pools(self) -> Iterator[Family]:
        pools = sorted(self.state.pools.values(), key=lambda p: p.name)
        sessions = _gauge("vdi_sessions", "Open sessions", ["pool", "state", "work_mode"])
        desktops = _gauge("vdi_pool_desktops", "Desktops by power state", ["pool", "power_state"])
        licences = _gauge("vdi_pool_max_sessions", "Licence limit of the pool", ["pool"])
        usable = _gauge(
            "vdi_pool_capacity_sessions",
            "Sessions the pool can hold now (licences bounded by desktops on "
            "accepting, fresh hosts, less those out of service)",
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
        out_of_service = _gauge(
            "vdi_pool_desktops_out_of_service",
            "Desktops on reporting hosts that cannot take a session: running with a "
            "console that did not answer the agent's last probe or without a console "
            "endpoint, or waiting for a reset that failed",
            ["pool"],
        )
        for p in pools:
            for s in SESSION_STATES:
                for mode in WORK_MODES:
                    sessions.add([p.name, s, mode], p.sessions.get((s, mode), 0))
            for power in POWER_STATES:
                desktops.add([p.name, power], p.power.get(power, 0))
            licences.add([p.name], p.max_sessions)
            usable.add([p.name], p.usable)
            utilization.add([p.name], p.utilization)
            without.add([p.name], p.without_largest_host)
            out_of_service.add([p.name], p.out_of_service)
        yield from (sessions, desktops, licences, usable, utilization, without, out_of_service)

    def _departments(self) -> Iterator[Family]:
        # Named sessions in the contract, but it counts what the cap counts:
        # staff with an open home session (two pools, one person).
        remote = _gauge(
            "vdi_department_remote_sessions", "Staff with an open home session", ["department"]
        )
        limit = _gauge(
            "vdi_department_remote_limit", "Cap on staff at home at once", ["department"]
        )
        for d in sorted(self.state.departments.values(), key=lambda d: d.name):
            remote.add([d.name], d.remote_staff)
            if d.limit is not None:
                limit.add([d.name], d.limit)
        yield from (remote, limit)

    def _events(self) -> Iterator[Family]:
        t = self.telemetry
        logins = _counter("vdi_logins", "Login attempts by result", ["result"])
        for result, count in sorted(t.logins.items()):
            logins.add([result], count)
        yield logins
        pools = sorted(p.name for p in self.state.pools.values())
        assignments = _counter("vdi_assignments", "Session requests by outcome", ["pool", "result"])
        for pool in pools:
            for result in ASSIGNMENT_RESULTS:
                assignments.add([pool, result], t.assignments.get((pool, result), 0))
        yield assignments
        decision = Family(
            "vdi_assignment_duration_seconds",
            "histogram",
            "Broker decision time of a session request",
        )
        _histogram(decision, [], t.assignment_duration)
        yield decision
        launch = Family(
            "vdi_session_launch_duration_seconds",
            "histogram",
            "From request to an active session",
            ["pool"],
        )
        for pool in pools:
            _histogram(launch, [pool], t.launch_histogram(pool))
        yield launch
        tunnels = _gauge("vdi_gateway_tunnels", "Open SSH tunnels on this broker")
        tunnels.add([], t.gateway_tunnels)
        yield tunnels
        traffic = _counter("vdi_gateway_bytes", "Bytes through the gateway", ["direction"])
        for direction, count in sorted(t.gateway_bytes.items()):
            traffic.add([direction], count)
        yield traffic
        failures = _counter("vdi_gateway_auth_failures", "Failed gateway authentications")
        failures.add([], t.gateway_auth_failures)
        yield failures


async def render(rt: Runtime) -> bytes:
    """The exposition text of one scrape."""
    state = await fleet.read(rt)
    return exposition.render(BrokerCollector(state, rt.telemetry).families())
