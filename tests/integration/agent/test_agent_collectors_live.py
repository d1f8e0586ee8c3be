"""Every collector on this machine's real psutil and /proc."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from agent.collectors.base import run_isolated
from agent.collectors.cpu import CpuCollector
from agent.collectors.disk import DiskCollector, HostDisks
from agent.collectors.load import LoadCollector
from agent.collectors.memory import MemoryCollector
from agent.collectors.network import NetworkCollector
from agent.collectors.pressure import PressureCollector
from agent.protocol import HostMetrics


def test_cpu_live() -> None:
    cpu = CpuCollector()
    first = cpu.collect()
    assert first["cpu_utilization_ratio"] is None
    assert first["cpus"] == os.cpu_count()
    # Busy for 50 ms of wall time: /proc/stat counts in 10 ms ticks, and a fixed
    # amount of work once took less than one tick in a fast moment, so no time
    # had passed between the samples (None).
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline:
        pass
    ratio = cpu.collect()["cpu_utilization_ratio"]
    assert ratio is not None and 0.0 <= ratio <= 1.0


def test_load_live() -> None:
    load = LoadCollector().collect()
    # the kernel updates the averages every 5 s, so compare with some slack
    for key, expected in zip(("load1", "load5", "load15"), os.getloadavg(), strict=True):
        assert load[key] == pytest.approx(expected, abs=0.5)


def test_memory_live() -> None:
    m = MemoryCollector().collect()
    assert 0 < m["memory_available_bytes"] <= m["memory_total_bytes"]
    assert 0 < m["memory_used_bytes"] < m["memory_total_bytes"]


def test_disk_live() -> None:
    disks = HostDisks().disks()
    before = psutil.disk_io_counters(perdisk=True)
    d = DiskCollector().collect()
    mounts = {disk["mount"]: disk for disk in d["disks"]}
    assert "/" in mounts and mounts["/"]["total_bytes"] > 0
    assert disks, "this machine has a physical (virtual machine) disk"
    assert d["disk_io"] is not None
    # our reading of /proc/diskstats agrees with psutil's for the same disks
    psutil_reads = sum(before[name].read_count for name in disks)
    assert psutil_reads <= d["disk_io"]["read_ops_total"] <= psutil_reads + 1000
    assert d["disk_io"]["read_bytes_total"] >= sum(before[n].read_bytes for n in disks)


def test_network_live() -> None:
    n = NetworkCollector().collect()["network"]
    assert n["bytes_recv_total"] >= 0 and n["drops_in_total"] >= 0


def test_pressure_live() -> None:
    outcome = run_isolated(PressureCollector())
    assert outcome.success
    has_psi = Path("/proc/pressure/cpu").exists()
    assert outcome.fields["pressure_available"] is has_psi
    if has_psi:
        assert set(outcome.fields["pressure"]) == {"cpu", "memory", "io"}


def test_all_live_collectors_make_valid_host_metrics() -> None:
    fields: dict[str, object] = {}
    for collector in (CpuCollector(), LoadCollector(), MemoryCollector(), DiskCollector(),
                      NetworkCollector(), PressureCollector()):  # fmt: skip
        outcome = run_isolated(collector)
        assert outcome.success, outcome.error
        fields.update(outcome.fields)
    HostMetrics.model_validate(fields)
