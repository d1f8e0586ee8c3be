"""Department caps and the priority reserve."""

from __future__ import annotations

from broker.policy.priority import is_priority, reserve_blocks, reserve_threshold
from broker.policy.quota import DepartmentCap, over_cap


def test_cap_by_number_or_share_of_staff() -> None:
    assert DepartmentCap("Bauamt", max_sessions=3).limit(staff=100) == 3
    assert DepartmentCap("Bauamt", share=0.5).limit(staff=9) == 4  # rounded down
    assert DepartmentCap("Bauamt", share=0.3).limit(staff=10) == 3
    assert DepartmentCap("Bauamt").limit(staff=10) is None


def test_over_cap() -> None:
    assert not over_cap(None, 1000)
    assert not over_cap(3, 2)
    assert over_cap(3, 3)
    assert over_cap(0, 0)


def test_priority_reserve() -> None:
    assert reserve_threshold(40, 0.1) == 36
    assert not reserve_blocks(35, 40, 0.1, priority=False)
    assert reserve_blocks(36, 40, 0.1, priority=False)
    assert not reserve_blocks(39, 40, 0.1, priority=True)
    assert not reserve_blocks(40, 40, 0.0, priority=False)
    assert is_priority("Krisenstab", frozenset({"Krisenstab"}))
    assert not is_priority("Kantine", frozenset({"Krisenstab"}))
    assert not is_priority(None, frozenset({"Krisenstab"}))
