"""The report and the broker's answer as JSON, without pydantic.

agent.protocol (pydantic) is the contract. The agent's report loop builds the same
JSON from plain dicts and checks the answer by hand, because importing pydantic
would add about 10 MB to the agent's memory on every host (agent.protocol_base).
Tests validate what this module builds against agent.protocol.Report and check
parse_response against agent.protocol.ReportResponse, so the two cannot drift
apart unnoticed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.collectors.base import Fields
from agent.collectors.probes import ProbeOutcome
from agent.hypervisors.base import Desktop
from agent.protocol_base import (
    ACTION_ID_MAX_LENGTH,
    MAX_ACTIONS,
    MAX_DESKTOPS,
    MAX_INTERVAL_S,
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    PROTOCOL_VERSION,
    ActionKind,
    has_control,
)

log = logging.getLogger(__name__)

# The broker refuses bodies over 1 MiB; stay clear of it.
MAX_REPORT_BYTES = 1_000_000
_NAME_RE = re.compile(NAME_PATTERN)
_ACTION_KINDS = frozenset(k.value for k in ActionKind)


def valid_name(name: str) -> bool:
    """Whether a desktop or host name can appear in a report."""
    return len(name) <= NAME_MAX_LENGTH and _NAME_RE.fullmatch(name) is not None


def desktop_entry(desktop: Desktop, default_pool: str | None, probe: ProbeOutcome | None) -> Fields:
    """As protocol.DesktopReport. A desktop that names no pool of its own is in the
    agent's --pool; None fields are left out (the report must stay small)."""
    entry: Fields = {"name": desktop.name, "power_state": desktop.power_state.value}
    pool = desktop.pool or default_pool
    if pool is not None:
        entry["pool"] = pool
    if desktop.address is not None and desktop.port is not None:
        entry["address"] = desktop.address
        entry["port"] = desktop.port
    if probe is not None:
        entry["probe"] = probe.as_report()
    if desktop.connections is not None:
        entry["connections"] = desktop.connections
    return entry


@dataclass(frozen=True)
class ReportHeader:
    host: str
    agent_version: str
    seq: int
    created_at: dt.datetime
    interval_s: float


def build_report(
    header: ReportHeader,
    metrics: Fields,
    desktops: Sequence[Fields],
    action_results: Sequence[Fields],
) -> Fields:
    """As protocol.Report."""
    return {
        "version": PROTOCOL_VERSION,
        "host": header.host,
        "agent_version": header.agent_version,
        "seq": header.seq,
        "created_at": header.created_at.isoformat(),
        "interval_s": header.interval_s,
        "metrics": metrics,
        "desktops": list(desktops[:MAX_DESKTOPS]),
        "action_results": list(action_results[:MAX_ACTIONS]),
    }


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_report(report: Fields, limit: int = MAX_REPORT_BYTES) -> bytes:
    """Compact JSON within `limit` bytes. Should the desktops not fit (only with very
    long names and pools), the report carries as many as fit, and says so in the
    log: a partial inventory beats a report the broker refuses as a whole."""
    body = _dumps(report)
    if len(body) <= limit:
        return body
    desktops = report["desktops"]
    base = len(_dumps({**report, "desktops": []}))
    room = limit - base
    kept = 0
    for entry in desktops:
        room -= len(_dumps(entry)) + 1  # the comma
        if room < 0:
            break
        kept += 1
    log.error(
        "report %s would be %d bytes, over the broker's limit; sending %d of %d desktops",
        report["seq"],
        len(body),
        kept,
        len(desktops),
    )
    return _dumps({**report, "desktops": desktops[:kept]})


@dataclass(frozen=True)
class Action:
    """A power action from the broker (protocol.Action)."""

    id: str
    kind: ActionKind
    desktop: str


@dataclass(frozen=True)
class Response:
    """The broker's answer to a report (protocol.ReportResponse)."""

    actions: list[Action]
    interval_s: float


class BadResponse(ValueError):
    pass


def _action(raw: Any) -> Action:
    if not isinstance(raw, Mapping):
        raise BadResponse("an action is not an object")
    action_id, kind, desktop = raw.get("id"), raw.get("kind"), raw.get("desktop")
    if (
        not isinstance(action_id, str)
        or not 1 <= len(action_id) <= ACTION_ID_MAX_LENGTH
        or has_control(action_id)
    ):
        raise BadResponse("an action id is not 1 to 64 characters without control characters")
    if not isinstance(desktop, str) or not valid_name(desktop):
        raise BadResponse(f"action {action_id}: desktop is not a valid name")
    if not isinstance(kind, str) or kind not in _ACTION_KINDS:
        raise BadResponse(f"action {action_id}: unknown kind {kind!r}")
    return Action(action_id, ActionKind(kind), desktop)


def parse_response(body: bytes) -> Response:
    """The broker's answer, checked as protocol.ReportResponse checks it. Unknown keys
    are ignored, so a newer broker may add some."""
    try:
        raw = json.loads(body)
    except ValueError:
        raise BadResponse("the answer is not JSON") from None
    if not isinstance(raw, Mapping):
        raise BadResponse("the answer is not a JSON object")
    interval = raw.get("interval_s")
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not 0 < interval <= MAX_INTERVAL_S
    ):
        raise BadResponse(f"interval_s must be a number above 0 and at most {MAX_INTERVAL_S}")
    actions = raw.get("actions", [])
    if not isinstance(actions, list):
        raise BadResponse("actions is not a list")
    return Response([_action(a) for a in actions], float(interval))
