"""Prometheus exposition of the broker: a custom collector built fresh per scrape.

The collector reads a snapshot of the broker's state (taken from the database by
`take_snapshot`) and the in-memory event counters (broker.telemetry). Labels are
bounded: host, pool, department, state, result; never a user or session id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from broker import __version__
from broker.runtime import Runtime
from broker.telemetry import Telemetry


@dataclass(frozen=True)
class Snapshot:
    """What the collector needs from the database, read in one go."""


async def take_snapshot(rt: Runtime) -> Snapshot:
    return Snapshot()


class BrokerCollector(Collector):
    def __init__(self, snapshot: Snapshot, telemetry: Telemetry) -> None:
        self.snapshot = snapshot
        self.telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily("vdi_broker_build_info", "Broker version", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        logins = CounterMetricFamily("vdi_logins", "Login attempts by result", labels=["result"])
        for result, count in sorted(self.telemetry.logins.items()):
            logins.add_metric([result], count)
        yield logins


async def render(rt: Runtime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(await take_snapshot(rt), rt.telemetry))
    return generate_latest(registry)
