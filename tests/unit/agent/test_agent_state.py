"""State transitions: seq, action results, (de)serialisation."""

from __future__ import annotations

import pytest

from agent.collectors.probes import ProbeTotals
from agent.state import (
    REMEMBERED_RESULTS,
    SEQ_BLOCK,
    ActionRecord,
    AgentState,
    CorruptState,
    acknowledge,
    from_json,
    known_result,
    raise_seq,
    record_result,
    release_unused_seqs,
    resend,
    take_seq,
    to_json,
)


def test_seq_only_rises() -> None:
    state = AgentState(seq=41, seq_reserved=41)
    assert take_seq(state)[0] == 42
    raise_seq(state, 10)
    assert state.seq == 42
    raise_seq(state, 5000)
    assert take_seq(state)[0] == 5001


def test_numbers_are_reserved_in_blocks() -> None:
    state = AgentState()
    assert take_seq(state) == (1, True)  # reserves 1..SEQ_BLOCK: save before use
    assert state.seq_reserved == SEQ_BLOCK
    assert [take_seq(state) for _ in range(SEQ_BLOCK - 1)][-1] == (SEQ_BLOCK, False)
    assert take_seq(state) == (SEQ_BLOCK + 1, True)


def test_a_crash_continues_above_the_reservation_a_clean_stop_right_after_the_last() -> None:
    state = AgentState()
    take_seq(state)
    take_seq(state)
    after_crash = from_json(to_json(state))
    assert take_seq(after_crash)[0] == SEQ_BLOCK + 1
    release_unused_seqs(state)
    after_stop = from_json(to_json(state))
    assert take_seq(after_stop)[0] == 3


def test_results_wait_for_acknowledgement_then_are_remembered() -> None:
    state = AgentState()
    record_result(state, ActionRecord("a1", True, power_state="stopped"))
    record_result(state, ActionRecord("a2", False, error="no such desktop"))
    acknowledge(state, ["a1"])
    assert list(state.unacknowledged) == ["a2"]
    assert list(state.acknowledged) == ["a1"]
    assert known_result(state, "a1") == ActionRecord("a1", True, power_state="stopped")
    assert known_result(state, "a3") is None


def test_resend_brings_a_remembered_result_back_into_the_next_report() -> None:
    state = AgentState()
    record_result(state, ActionRecord("a1", True, power_state="running"))
    acknowledge(state, ["a1"])
    resend(state, "a1")
    assert list(state.unacknowledged) == ["a1"] and not state.acknowledged


def test_acknowledging_an_unknown_id_changes_nothing() -> None:
    state = AgentState()
    acknowledge(state, ["nope"])
    assert not state.unacknowledged and not state.acknowledged


def test_remembered_results_are_bounded_oldest_first() -> None:
    state = AgentState()
    for i in range(REMEMBERED_RESULTS + 10):
        record_result(state, ActionRecord(f"a{i}", True))
    acknowledge(state, [f"a{i}" for i in range(REMEMBERED_RESULTS + 10)])
    assert len(state.acknowledged) == REMEMBERED_RESULTS
    assert "a0" not in state.acknowledged and f"a{REMEMBERED_RESULTS + 9}" in state.acknowledged


def test_json_round_trip() -> None:
    state = AgentState(seq=7, seq_reserved=7, probes=ProbeTotals(100, 3))
    record_result(state, ActionRecord("a1", False, error="boom"))
    record_result(state, ActionRecord("a2", True, power_state="running"))
    acknowledge(state, ["a2"])
    assert from_json(to_json(state)) == state


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"format": 99, "seq": 1, "probes_total": 0, "timeouts_total": 0},
        {"format": 1, "seq": -1, "probes_total": 0, "timeouts_total": 0},
        {"format": 1, "seq": True, "probes_total": 0, "timeouts_total": 0},
        {"format": 1, "seq": 1, "probes_total": "0", "timeouts_total": 0},
        {"format": 1, "seq": 1, "probes_total": 0, "timeouts_total": 0, "unacknowledged": [{}]},
    ],
)
def test_damaged_state_is_recognised(raw: object) -> None:
    with pytest.raises(CorruptState):
        from_json(raw)
