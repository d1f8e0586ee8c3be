"""The agent's persistent state: what must survive a restart or a broker outage.

- seq: report numbers rise strictly (the broker refuses one not above the last
  it has). Numbers are reserved in blocks: before a report uses a number beyond
  the stored reservation, a new block is reserved and saved to disk (fsync).
  After a clean stop the reservation is cut back to the last number used, so
  the agent continues at stored + 1; after a crash it continues above the
  reservation. Either way no number is used twice, with one disk write per
  SEQ_BLOCK reports instead of one per report.
- probe counters: cumulative, so no timeout is lost while reports fail. Saved at
  most every few seconds (runner.SAVE_EVERY_S) and at a stop; a crash loses only
  the counts since the last save.
- action results: executed actions whose results the broker has not yet
  acknowledged (by accepting a report that carried them), and a bounded memory of
  acknowledged ones, so an action the broker sends again is never run twice.
  Saved to disk (fsync) as soon as they change.

Kept as one small JSON file, written to a temporary file and renamed over the
old one, so a crash leaves either the old or the new state, never half of one.
One running agent owns the directory (StateStore.lock): two agents sharing it
would each overwrite the other's seq reservation and action results.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.collectors.base import Fields
from agent.collectors.probes import ProbeTotals

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOCK_FILE = "lock"
FORMAT = 1
# Acknowledged action results kept to answer re-sent actions; a broker re-sends an
# action only until it sees the result, so a few thousand cover any backlog.
REMEMBERED_RESULTS = 4096
SEQ_BLOCK = 1000


@dataclass(frozen=True)
class ActionRecord:
    """The result of one executed action, as protocol.ActionResult."""

    id: str
    ok: bool
    error: str | None = None
    power_state: str | None = None

    def as_report(self) -> Fields:
        result: Fields = {"id": self.id, "ok": self.ok}
        if self.error is not None:
            result["error"] = self.error
        if self.power_state is not None:
            result["power_state"] = self.power_state
        return result


@dataclass
class AgentState:
    seq: int = 0  # the last report number used
    seq_reserved: int = 0  # no number above this has been used; saved before use
    probes: ProbeTotals = field(default_factory=ProbeTotals)
    unacknowledged: dict[str, ActionRecord] = field(default_factory=dict)
    acknowledged: dict[str, ActionRecord] = field(default_factory=dict)


def take_seq(state: AgentState) -> tuple[int, bool]:
    """The next report number, and whether a new block of numbers was reserved,
    which must be saved to disk before the number is used."""
    state.seq += 1
    if state.seq <= state.seq_reserved:
        return state.seq, False
    state.seq_reserved = state.seq + SEQ_BLOCK - 1
    return state.seq, True


def raise_seq(state: AgentState, at_least: int) -> None:
    """Move seq up (never down), e.g. when the broker has seen higher numbers from a
    previous installation of this host."""
    state.seq = max(state.seq, at_least)


def release_unused_seqs(state: AgentState) -> None:
    """At a clean stop: the numbers reserved but not used are free again."""
    state.seq_reserved = state.seq


def record_result(state: AgentState, record: ActionRecord) -> None:
    state.unacknowledged[record.id] = record


def known_result(state: AgentState, action_id: str) -> ActionRecord | None:
    """The stored result of an action already executed, if any."""
    return state.unacknowledged.get(action_id) or state.acknowledged.get(action_id)


def resend(state: AgentState, action_id: str) -> None:
    """Report an acknowledged result again: the broker asked for the action anew,
    so it has lost or never received the result."""
    record = state.acknowledged.pop(action_id, None)
    if record is not None:
        state.unacknowledged[action_id] = record


def acknowledge(state: AgentState, action_ids: Iterable[str]) -> None:
    """The broker accepted a report carrying these results."""
    for action_id in action_ids:
        record = state.unacknowledged.pop(action_id, None)
        if record is not None:
            state.acknowledged[action_id] = record
    excess = len(state.acknowledged) - REMEMBERED_RESULTS
    for action_id in list(state.acknowledged)[: max(0, excess)]:
        del state.acknowledged[action_id]


def to_json(state: AgentState) -> dict[str, Any]:
    return {
        "format": FORMAT,
        # the highest number that may have been used: where the next start continues
        "seq": max(state.seq, state.seq_reserved),
        "probes_total": state.probes.probes_total,
        "timeouts_total": state.probes.timeouts_total,
        "unacknowledged": [r.as_report() for r in state.unacknowledged.values()],
        "acknowledged": [r.as_report() for r in state.acknowledged.values()],
    }


class CorruptState(ValueError):
    pass


def _records(raw: Any) -> dict[str, ActionRecord]:
    if not isinstance(raw, list):
        raise CorruptState("action results are not a list")
    records = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise CorruptState("an action result has no id")
        records[item["id"]] = ActionRecord(
            item["id"], bool(item.get("ok")), item.get("error"), item.get("power_state")
        )
    return records


def _count(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptState(f"{key} is not a non-negative integer")
    return value


def from_json(raw: Any) -> AgentState:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CorruptState("not an agent state file of a known format")
    seq = _count(raw, "seq")
    return AgentState(
        seq=seq,
        seq_reserved=seq,
        probes=ProbeTotals(_count(raw, "probes_total"), _count(raw, "timeouts_total")),
        unacknowledged=_records(raw.get("unacknowledged", [])),
        acknowledged=_records(raw.get("acknowledged", [])),
    )


class StateInUse(Exception):
    """Another running agent holds the state directory."""


class StateStore:
    """The state file in the agent's state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the directory for this process until `unlock` or its exit (a
        flock, so a crashed agent leaves no stale lock behind)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateInUse(
                f"the state directory {self.directory} is in use by another vdi-agent "
                f"(pid {holder}); give each agent its own --state-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def load(self, set_aside_damaged: bool = True) -> AgentState:
        """The stored state, or a fresh one. A damaged file is set aside (for a person
        to look at) rather than stopping the agent: the broker's answer to a too-low
        seq then moves the numbering on. A reader that must change nothing
        (vdi-agent once) leaves it where it is."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AgentState()
        try:
            return from_json(json.loads(text))
        except (ValueError, CorruptState) as exc:
            if not set_aside_damaged:
                log.warning("agent state %s is damaged (%s); using a fresh one", self.path, exc)
                return AgentState()
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{stamp}")
            self.path.replace(aside)
            log.error(
                "agent state %s is damaged (%s); moved to %s, starting afresh",
                self.path,
                exc,
                aside,
            )
            return AgentState()

    def save(self, state: AgentState, durable: bool = True) -> None:
        """Write the state; `durable` also waits until it is on disk."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps(to_json(state), separators=(",", ":")).encode()
        temporary = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            temporary.replace(self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        if durable:  # the rename must reach the disk too
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
