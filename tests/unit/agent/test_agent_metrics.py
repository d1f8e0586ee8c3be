"""The agent's own metrics, as a scrape sees them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from agent.metrics import render
from agent.telemetry import CollectorHealth, Telemetry


def samples(telemetry: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(lambda: telemetry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metric_names_and_values() -> None:
    telemetry = Telemetry(
        collectors=(CollectorHealth("cpu", True, 0.001), CollectorHealth("pressure", False, 0.5)),
        reports_sent=41,
        reports_failed=3,
        backlog=2,
        last_success_timestamp=1_767_268_800.0,
        desktops={"running": 18, "stopped": 2},
    )
    got = samples(telemetry)
    assert got[("vdi_agent_build_info", (("version", __version__),))] == 1
    assert got[("vdi_agent_collector_success", (("collector", "cpu"),))] == 1
    assert got[("vdi_agent_collector_success", (("collector", "pressure"),))] == 0
    assert got[("vdi_agent_collector_duration_seconds", (("collector", "pressure"),))] == 0.5
    assert got[("vdi_agent_reports_sent_total", ())] == 41
    assert got[("vdi_agent_reports_failed_total", ())] == 3
    assert got[("vdi_agent_report_backlog", ())] == 2
    assert got[("vdi_agent_last_report_success_timestamp_seconds", ())] == 1_767_268_800.0
    assert got[("vdi_agent_desktops", (("power_state", "running"),))] == 18
    assert got[("vdi_agent_desktops", (("power_state", "crashed"),))] == 0


def test_before_the_first_report() -> None:
    got = samples(Telemetry())
    assert got[("vdi_agent_reports_sent_total", ())] == 0
    assert got[("vdi_agent_last_report_success_timestamp_seconds", ())] == 0
    assert not [k for k in got if k[0] == "vdi_agent_collector_success"]
