"""The agent's own metrics (vdi_agent_*), served on --metrics-port.

Built fresh on every scrape from the latest Telemetry snapshot, which the report
loop replaces as a whole after each cycle; the scrape runs in the server's
thread and only ever reads a finished snapshot. This module is imported only
when --metrics-port is given, so prometheus-client costs nothing otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.registry import Collector

from agent import __version__
from agent.protocol_base import PowerState
from agent.telemetry import Telemetry


class AgentCollector(Collector):
    def __init__(self, telemetry: Callable[[], Telemetry]) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        t = self._telemetry()
        build = GaugeMetricFamily("vdi_agent_build_info", "Agent version", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        success = GaugeMetricFamily(
            "vdi_agent_collector_success",
            "Whether the collector succeeded in the last cycle",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            "vdi_agent_collector_duration_seconds",
            "How long the collector took in the last cycle",
            labels=["collector"],
        )
        for c in t.collectors:
            success.add_metric([c.name], 1 if c.success else 0)
            duration.add_metric([c.name], c.duration_s)
        yield success
        yield duration
        yield CounterMetricFamily(
            "vdi_agent_reports_sent", "Reports the broker accepted", value=t.reports_sent
        )
        yield CounterMetricFamily(
            "vdi_agent_reports_failed",
            "Reports that could not be delivered or were refused",
            value=t.reports_failed,
        )
        yield GaugeMetricFamily(
            "vdi_agent_report_backlog",
            "Action results waiting for delivery to the broker",
            value=t.backlog,
        )
        yield GaugeMetricFamily(
            "vdi_agent_last_report_success_timestamp_seconds",
            "When the broker last accepted a report (0: not yet)",
            value=t.last_success_timestamp,
        )
        desktops = GaugeMetricFamily(
            "vdi_agent_desktops", "Desktops on this host by power state", labels=["power_state"]
        )
        for state in PowerState:  # every state, so a series drops to 0 instead of vanishing
            desktops.add_metric([state.value], t.desktops.get(state.value, 0))
        yield desktops


def registry_for(telemetry: Callable[[], Telemetry]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(telemetry))
    return registry


def render(telemetry: Callable[[], Telemetry]) -> bytes:
    """The exposition text, as a scrape gets it."""
    return generate_latest(registry_for(telemetry))


@dataclass(frozen=True)
class MetricsServer:
    url: str
    stop: Callable[[], None]


def serve(address: str, port: int, telemetry: Callable[[], Telemetry]) -> MetricsServer:
    """Serve /metrics in a background thread. Port 0 picks a free port; the URL
    says which."""
    server, thread = start_http_server(port, address, registry=registry_for(telemetry))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    host = f"[{address}]" if ":" in address else address
    return MetricsServer(f"http://{host}:{server.server_port}/metrics", stop)
