"""The state file: atomic, private, and seq only rises across restarts."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.collectors.probes import ProbeTotals
from agent.config import AgentConfig
from agent.hypervisors.simulated import SimulatedHypervisor
from agent.runner import Agent, serve
from agent.state import (
    SEQ_BLOCK,
    STATE_FILE,
    ActionRecord,
    AgentState,
    StateInUse,
    StateStore,
    record_result,
    release_unused_seqs,
)


def test_save_and_load(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    state = AgentState(seq=12, seq_reserved=12, probes=ProbeTotals(40, 2))
    record_result(state, ActionRecord("a1", True, power_state="running"))
    store.save(state)
    assert store.load() == state
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert [p.name for p in store.directory.iterdir()] == ["state.json"]  # no temp file left


def test_missing_state_is_fresh(tmp_path: Path) -> None:
    assert StateStore(tmp_path).load() == AgentState()
    assert not (tmp_path / "state.json").exists()


def test_damaged_state_is_set_aside(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.path.write_text("{not json")
    assert store.load() == AgentState()
    aside = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"


async def lifetime(store: StateStore, reports: int, clean_stop: bool) -> list[dict[str, Any]]:
    """One agent process's life on the state directory: some reports, then a clean
    stop (as on SIGTERM) or a crash (nothing more written)."""
    config = AgentConfig(hypervisor="simulated", probe_timeout=0.3)
    sim = await SimulatedHypervisor(3, hang=1).start()
    agent = Agent(config, sim, store.load(), store)
    built = [agent.build_report(*await agent.collect()) for _ in range(reports)]
    await sim.close()
    if clean_stop:
        release_unused_seqs(agent.state)
        agent.save()
    return built


async def test_seq_and_counters_survive_a_restart(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    first = await lifetime(store, 2, clean_stop=True)
    second = await lifetime(store, 2, clean_stop=True)
    assert [r["seq"] for r in first + second] == [1, 2, 3, 4]
    probes = [r["metrics"]["probes"] for r in first + second]
    assert [p["probes_total"] for p in probes] == [3, 6, 9, 12]
    assert [p["timeouts_total"] for p in probes] == [1, 2, 3, 4]
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["seq"] == 4 and saved["timeouts_total"] == 4


async def test_after_a_crash_seq_still_only_rises(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    crashed = await lifetime(store, 3, clean_stop=False)
    after = await lifetime(store, 1, clean_stop=True)
    assert [r["seq"] for r in crashed] == [1, 2, 3]
    assert after[0]["seq"] == SEQ_BLOCK + 1  # above every number the crashed one reserved
    # the reservation was saved with the first report's counters; later ones were lost
    assert after[0]["metrics"]["probes"]["probes_total"] == 3 + 3


def _block_writes(store: StateStore) -> Path:
    """A directory where save() writes its temporary file: the next write fails
    as on a broken disk (root ignores file modes, so a read-only mode would not)."""
    blocker = store.directory / f".{STATE_FILE}.{os.getpid()}.tmp"
    blocker.mkdir(parents=True)
    return blocker


def test_a_state_write_that_fails_while_running_is_logged_once_and_reporting_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(tmp_path / "state")
    agent = Agent(AgentConfig(hypervisor="simulated"), SimulatedHypervisor(1), AgentState(), store)
    blocker = _block_writes(store)
    with caplog.at_level(logging.INFO, logger="agent.runner"):
        agent.state.seq = 7
        agent.save()  # no exception: the agent must keep reporting
        agent.save()
        assert not store.path.exists()
        blocker.rmdir()
        agent.save()
    assert store.load().seq == 7
    said = [r.getMessage() for r in caplog.records]
    assert [m for m in said if "cannot save" in m] == [
        f"cannot save the agent's state in {store.directory}: Is a directory; reporting goes on"
    ]
    assert any("saved again" in m for m in said)


async def test_a_state_directory_that_cannot_be_written_stops_the_start(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken")
    config = AgentConfig(
        hypervisor="simulated",
        broker="http://127.0.0.1:9",  # never reached
        token_file=token,
        state_dir=tmp_path / "state",
    )
    _block_writes(StateStore(config.state_dir))
    with pytest.raises(IsADirectoryError):
        await serve(config)


def test_the_state_directory_belongs_to_one_agent_at_a_time(tmp_path: Path) -> None:
    """A second agent on the same directory would overwrite the first one's seq
    reservation and action results: it does not start. A killed holder leaves
    no lock behind."""
    state_dir = tmp_path / "state"
    token = tmp_path / "token"
    token.write_text("t0ken")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from agent.state import StateStore; StateStore(Path(sys.argv[1])).lock(); "
         "print('locked', flush=True); time.sleep(60)", str(state_dir)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        second = subprocess.run(
            [str(Path(sys.executable).parent / "vdi-agent"), "run",
             "--broker", "http://127.0.0.1:9", "--token-file", str(token),
             "--state-dir", str(state_dir), "--hypervisor", "simulated"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        assert (
            f"the state directory {state_dir} is in use by another vdi-agent "
            f"(pid {holder.pid}); give each agent its own --state-dir"
        ) in second.stderr
        assert not (state_dir / STATE_FILE).exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    store = StateStore(state_dir)
    store.lock()
    with pytest.raises(StateInUse):
        StateStore(state_dir).lock()  # a second open in one process conflicts too
    store.unlock()
    again = StateStore(state_dir)
    again.lock()
    again.unlock()
