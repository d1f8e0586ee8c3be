"""The state file: atomic, private, and seq only rises across restarts."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from agent.collectors.probes import ProbeTotals
from agent.config import AgentConfig
from agent.hypervisors.simulated import SimulatedHypervisor
from agent.runner import Agent
from agent.state import ActionRecord, AgentState, StateStore, record_result


def test_save_and_load(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    state = AgentState(seq=12, probes=ProbeTotals(40, 2))
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


async def test_seq_and_counters_survive_a_restart(tmp_path: Path) -> None:
    config = AgentConfig(hypervisor="simulated", state_dir=tmp_path, probe_timeout=0.3)
    store = StateStore(tmp_path)
    seqs = []
    probes = []
    for _run in range(2):  # two agent lifetimes on the same state directory
        sim = await SimulatedHypervisor(3, hang=1).start()
        agent = Agent(config, sim, store.load(), store)
        for _ in range(2):
            report = agent.build_report(*await agent.collect())
            seqs.append(report["seq"])
            probes.append(report["metrics"]["probes"])
        await sim.close()
    assert seqs == [1, 2, 3, 4]
    assert [p["probes_total"] for p in probes] == [3, 6, 9, 12]
    assert [p["timeouts_total"] for p in probes] == [1, 2, 3, 4]
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["seq"] == 4 and saved["timeouts_total"] == 4
