"""How probe outcomes are named and counted."""

from __future__ import annotations

import errno

import pytest

from agent.collectors.probes import (
    ProbeOutcome,
    ProbeTotals,
    classify,
    failure_changes,
    probe_stats,
    tally,
    timeout_changes,
)
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


TIMEOUT = ProbeOutcome(ok=False, error="timeout")
REFUSED = ProbeOutcome(ok=False, error="refused")
ANSWERS = ProbeOutcome(ok=True, latency_s=0.01)
HANDSHAKE = ProbeOutcome(ok=False, error="error")


def test_timeout_changes_name_each_change_once() -> None:
    first = timeout_changes(frozenset(), ["a", "b"], {"a": TIMEOUT, "b": ANSWERS})
    assert (first.timing_out, first.started, first.ended) == ({"a"}, ("a",), ())
    again = timeout_changes(first.timing_out, ["a", "b"], {"a": TIMEOUT, "b": TIMEOUT})
    assert (again.timing_out, again.started, again.ended) == ({"a", "b"}, ("b",), ())
    back = timeout_changes(again.timing_out, ["a", "b"], {"a": ANSWERS, "b": REFUSED})
    assert back.timing_out == frozenset() and back.started == ()
    assert back.ended == (("a", ANSWERS), ("b", REFUSED))


def test_a_desktop_not_probed_keeps_its_standing_until_it_is_gone() -> None:
    """A stopped desktop, or a failed probe round, is no news; a removed one is forgotten."""
    before = frozenset({"a", "b"})
    unprobed = timeout_changes(before, ["a", "b"], {})
    assert (unprobed.timing_out, unprobed.started, unprobed.ended) == (before, (), ())
    gone = timeout_changes(before, ["a"], {})
    assert gone.timing_out == {"a"} and gone.ended == ()


def test_failure_changes_name_refusals_once_and_leave_timeouts_alone() -> None:
    """A refusing console takes its desktop out of service (VdiDesktopsOutOfService)
    without moving a timeout counter: the journal must name it all the same."""
    first = failure_changes({}, ["a", "b", "c"], {"a": REFUSED, "b": TIMEOUT, "c": ANSWERS})
    assert (first.failing, first.started, first.ended) == (
        {"a": "refused"},
        (("a", "refused"),),
        (),
    )
    again = failure_changes(first.failing, ["a", "b", "c"], {"a": REFUSED, "c": HANDSHAKE})
    assert again.failing == {"a": "refused", "c": "error"}
    assert again.started == (("c", "error"),) and again.ended == ()
    back = failure_changes(again.failing, ["a", "c"], {"a": ANSWERS, "c": TIMEOUT})
    assert (back.failing, back.started, back.ended) == ({}, (), ("a",))


def test_a_failing_desktop_not_probed_keeps_its_standing_until_it_is_gone() -> None:
    unprobed = failure_changes({"a": "refused"}, ["a"], {})
    assert (unprobed.failing, unprobed.started, unprobed.ended) == ({"a": "refused"}, (), ())
    assert failure_changes({"a": "refused"}, [], {}).failing == {}
