"""How probe outcomes are named and counted."""

from __future__ import annotations

import errno

import pytest

from agent.collectors.probes import ProbeOutcome, ProbeTotals, classify, probe_stats, tally
from agent.handshake import HandshakeError
from agent.protocol import ProbeResult, ProbeStats


@pytest.mark.parametrize(
    ("exc", "name"),
    [
        (TimeoutError(), "timeout"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "refused"),
        (OSError(errno.EHOSTUNREACH, "no route to host"), "unreachable"),
        (OSError(errno.ENETUNREACH, "network is unreachable"), "unreachable"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "error"),
        (HandshakeError("not RFB"), "error"),
    ],
)
def test_classify(exc: BaseException, name: str) -> None:
    assert classify(exc) == name


def test_tally_adds_to_the_cumulative_counters_and_averages_successes() -> None:
    outcomes = [
        ProbeOutcome(ok=True, latency_s=0.1),
        ProbeOutcome(ok=True, latency_s=0.3),
        ProbeOutcome(ok=False, error="timeout"),
        ProbeOutcome(ok=False, error="refused"),
    ]
    totals, mean = tally(ProbeTotals(probes_total=10, timeouts_total=2), outcomes)
    assert totals == ProbeTotals(probes_total=14, timeouts_total=3)
    assert mean == pytest.approx(0.2)


def test_a_round_without_successes_has_no_mean() -> None:
    totals, mean = tally(ProbeTotals(), [ProbeOutcome(ok=False, error="timeout")])
    assert totals.timeouts_total == 1 and mean is None
    assert probe_stats(totals, mean) == {"probes_total": 1, "timeouts_total": 1}


def test_report_forms_match_the_protocol() -> None:
    assert ProbeResult.model_validate(ProbeOutcome(True, 0.0123456789).as_report()).latency_s == (
        pytest.approx(0.012346)
    )
    failed = ProbeResult.model_validate(ProbeOutcome(False, error="timeout").as_report())
    assert failed.error == "timeout" and not failed.ok
    stats = ProbeStats.model_validate(probe_stats(ProbeTotals(3, 1), 0.5))
    assert (stats.probes_total, stats.timeouts_total, stats.latency_mean_s) == (3, 1, 0.5)
