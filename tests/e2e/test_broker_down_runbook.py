"""VdiBrokerDown for a broker that runs but refuses Prometheus its /metrics.

The likeliest page on a new installation: the broker is healthy, but the
address Prometheus scrapes from is outside `metrics_networks`, so every scrape
gets a 403 and `up` is 0. Every check the runbook lists (service status,
/healthz, /readyz) then looks fine; only the scrape error that Prometheus
shows on its Targets page tells why. A real broker and a real Prometheus show
that error here, and the runbook must name it.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.artifacts import RUNBOOKS
from tests.support.monitoring import running_prometheus
from tests.support.processes import start_broker, stop, until

pytestmark = pytest.mark.slow

# Loopback, where Prometheus scrapes from here, is not in it.
ELSEWHERE = "192.0.2.0/24"


def runbook_section(name: str) -> str:
    text = RUNBOOKS.read_text(encoding="utf-8")
    match = re.search(rf"^## {name}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"no section {name} in {RUNBOOKS}"
    return " ".join(match.group(1).split())  # lines joined as rendered


def scrape_error(prometheus: str) -> str:
    """The last scrape error of the broker target, once it was scraped and failed."""
    body = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()
    down = [t for t in body["data"]["activeTargets"] if t["health"] == "down"]
    return str(down[0]["lastError"]) if down else ""  # none until the first scrape


def test_a_refused_scrape_is_in_the_broker_down_runbook(tmp_path: Path) -> None:
    broker, base = start_broker(tmp_path / "data", metrics_networks=f'["{ELSEWHERE}"]')
    try:
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        config = tmp_path / "prometheus.yml"
        scrape = {
            "job_name": "vdi-broker",
            "scrape_interval": "1s",
            "static_configs": [{"targets": [base.removeprefix("http://")]}],
        }
        config.write_text(yaml.safe_dump({"scrape_configs": [scrape]}), encoding="utf-8")
        with running_prometheus(config, tmp_path) as prometheus:
            error = until(lambda: scrape_error(prometheus.url), timeout=30, what="a failed scrape")
    finally:
        stop(broker)
    assert "403" in error, error
    section = runbook_section("VdiBrokerDown")
    assert error in section, f"the runbook does not quote the scrape error {error!r}"
    assert "metrics_networks" in section
