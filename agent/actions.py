"""Carrying out the broker's power actions, each exactly once.

The broker delivers an action until it sees the result, so the same action can
arrive again (a lost answer, a broker restart). An id already executed is not
executed again; its stored result is reported again instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agent.collectors.base import describe_error
from agent.hypervisors.base import Hypervisor, HypervisorError
from agent.protocol_base import ERROR_MAX_LENGTH, one_line
from agent.state import ActionRecord, AgentState, known_result, record_result, resend
from agent.wire import Action

log = logging.getLogger(__name__)


def plan(state: AgentState, actions: Sequence[Action]) -> tuple[list[Action], list[str]]:
    """(actions to execute now, ids whose stored result is to be reported again)."""
    new: list[Action] = []
    repeated: list[str] = []
    seen: set[str] = set()
    for action in actions:
        if action.id in seen:
            continue
        seen.add(action.id)
        if known_result(state, action.id) is None:
            new.append(action)
        else:
            repeated.append(action.id)
    return new, repeated


async def execute(hypervisor: Hypervisor, state: AgentState, actions: Sequence[Action]) -> int:
    """Execute the new actions in order, store their results; how many ran."""
    new, repeated = plan(state, actions)
    for action_id in repeated:
        resend(state, action_id)
    for action in new:
        try:
            power = await hypervisor.perform(action.kind, action.desktop)
            record = ActionRecord(action.id, True, power_state=power.value)
            log.info("%s %s (action %s): now %s", action.kind, action.desktop, action.id, power)
        except HypervisorError as exc:
            record = ActionRecord(action.id, False, error=one_line(str(exc), ERROR_MAX_LENGTH))
            log.warning("%s %s (action %s) failed: %s", action.kind, action.desktop, action.id, exc)
        except Exception as exc:  # a hypervisor bug must not stop the agent
            record = ActionRecord(action.id, False, error=describe_error(exc))
            log.exception("%s %s (action %s) failed", action.kind, action.desktop, action.id)
        record_result(state, record)
    return len(new)
