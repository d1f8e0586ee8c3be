"""Which actions run, which only have their result reported again."""

from __future__ import annotations

from agent.actions import plan
from agent.protocol import ActionKind
from agent.state import ActionRecord, AgentState, acknowledge, record_result
from agent.wire import Action


def test_new_actions_run_known_ones_are_reported_again_duplicates_once() -> None:
    state = AgentState()
    record_result(state, ActionRecord("done-acked", True))
    acknowledge(state, ["done-acked"])
    record_result(state, ActionRecord("done-pending", True))
    actions = [
        Action("new-1", ActionKind.START, "a"),
        Action("done-acked", ActionKind.STOP, "b"),
        Action("new-1", ActionKind.START, "a"),
        Action("done-pending", ActionKind.RESET, "c"),
        Action("new-2", ActionKind.REBOOT, "d"),
    ]
    new, repeated = plan(state, actions)
    assert [a.id for a in new] == ["new-1", "new-2"]
    assert repeated == ["done-acked", "done-pending"]
