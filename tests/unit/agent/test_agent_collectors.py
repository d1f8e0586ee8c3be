"""Every host collector on fixed data, and the isolation between collectors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.collectors.base import (
    Outcome,
    collector_changes,
    describe_error,
    merge,
    run_isolated,
)
from agent.collectors.cpu import CpuCollector, CpuSample, utilisation
from agent.collectors.disk import (
    DiskCollector,
    IoReading,
    Partition,
    Usage,
    real_mounts,
    sum_diskstats,
)
from agent.collectors.load import LoadCollector
from agent.collectors.memory import MemoryCollector
from agent.collectors.network import NetworkCollector, NicCounters, totals
from agent.collectors.pressure import MalformedPressure, PressureCollector, parse_some_avg10
from agent.protocol import CollectorStatus, HostMetrics

PSI_CPU = """some avg10=12.50 avg60=3.00 avg300=1.00 total=10701247
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
"""
PSI_MEMORY = """some avg10=0.00 avg60=0.00 avg300=0.00 total=0
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
"""
PSI_IO = """some avg10=100.00 avg60=0.08 avg300=0.24 total=3571508
full avg10=0.18 avg60=0.08 avg300=0.22 total=3236230
"""


def write_psi(proc: Path, **files: str) -> Path:
    (proc / "pressure").mkdir(parents=True)
    for name, text in files.items():
        (proc / "pressure" / name).write_text(text)
    return proc


# -- cpu ------------------------------------------------------------------------


def test_utilisation_is_busy_share_of_elapsed_time() -> None:
    assert utilisation(CpuSample(100, 80), CpuSample(200, 155)) == pytest.approx(0.25)


def test_utilisation_is_none_when_no_time_passed() -> None:
    assert utilisation(CpuSample(100, 80), CpuSample(100, 80)) is None


def test_utilisation_stays_within_ratio_bounds_on_odd_counters() -> None:
    # idle moving more than total happens with counter quirks; still a ratio
    assert utilisation(CpuSample(100, 50), CpuSample(110, 70)) == 0.0


def test_cpu_first_cycle_reports_none_then_the_difference() -> None:
    samples = iter([CpuSample(1000, 900), CpuSample(1100, 940)])
    cpu = CpuCollector(sample=lambda: next(samples), count=lambda: 8)
    assert cpu.collect() == {"cpu_utilization_ratio": None, "cpus": 8}
    assert cpu.collect() == {"cpu_utilization_ratio": pytest.approx(0.6), "cpus": 8}


# -- load, memory ---------------------------------------------------------------


def test_load_reports_three_averages() -> None:
    load = LoadCollector(loadavg=lambda: (1.5, 0.75, 0.25))
    assert load.collect() == {"load1": 1.5, "load5": 0.75, "load15": 0.25}


def test_memory_reports_total_available_used() -> None:
    reading = SimpleNamespace(total=16 << 30, available=10 << 30, used=5 << 30)
    assert MemoryCollector(read=lambda: reading).collect() == {
        "memory_total_bytes": 16 << 30,
        "memory_available_bytes": 10 << 30,
        "memory_used_bytes": 5 << 30,
    }


# -- disk -------------------------------------------------------------------------


DISKSTATS = """\
   7       0 loop0 50 0 400 1 0 0 0 0 0 4 1 0 0 0 0 0 0
 252       0 vda 42870 9407 3306834 12574 68935 44487 6833784 29491 0 9992 42066
 252       1 vda1 42000 9000 3300000 12000 68000 44000 6800000 29000 0 9000 41000
 253       0 dm-0 10 0 80 0 10 0 80 0 0 1 1
   8       0 sdb 1 0 8 0 2 0 16 0 0 1 1
"""


class FixedDisks:
    def __init__(self, partitions: list[Partition], disks: frozenset[str], stats: str) -> None:
        self._partitions = partitions
        self._disks = disks
        self._stats = stats
        self.layout_reads = 0

    def partitions(self) -> list[Partition]:
        self.layout_reads += 1
        return self._partitions

    def usage(self, mount: str) -> Usage:
        return Usage(total=1000, used=250 if mount == "/" else 100, free=750)

    def disks(self) -> frozenset[str]:
        return self._disks

    def diskstats(self) -> str:
        return self._stats


def test_real_mounts_drop_pseudo_filesystems_and_repeated_devices() -> None:
    mounts = real_mounts(
        [
            Partition("/dev/sda1", "/", "ext4"),
            Partition("/dev/sda1", "/srv/bind/of/root", "ext4"),
            Partition("/dev/loop3", "/snap/core/1", "squashfs"),
            Partition("overlay", "/var/lib/docker/x", "overlay"),
            Partition("/dev/sdb1", "/var/lib/libvirt/images", "xfs"),
        ]
    )
    assert [m.mount for m in mounts] == ["/", "/var/lib/libvirt/images"]


def test_real_mounts_leave_out_what_a_report_cannot_carry() -> None:
    mounts = real_mounts(
        [
            Partition("/dev/sda1", "/", "ext4"),
            Partition("/dev/sdb1", "/srv/odd\nname", "ext4"),
            Partition("/dev/sdc1", "/" + "x" * 256, "ext4"),
        ]
    )
    assert [m.mount for m in mounts] == ["/"]


def test_real_mounts_keep_at_most_64() -> None:
    many = [Partition(f"/dev/d{i}", f"/m{i:03d}", "ext4") for i in range(100)]
    assert len(real_mounts(many)) == 64


def test_diskstats_sum_only_the_physical_disks() -> None:
    io = sum_diskstats(DISKSTATS, frozenset({"vda", "sdb"}))
    # partitions (vda1), loop and device-mapper devices would count the same I/O twice
    assert io == IoReading(
        read_bytes=(3306834 + 8) * 512,
        write_bytes=(6833784 + 16) * 512,
        read_count=42870 + 1,
        write_count=68935 + 2,
    )
    assert sum_diskstats(DISKSTATS, frozenset({"nvme0n1"})) is None
    assert sum_diskstats("", frozenset({"vda"})) is None


def test_disk_reports_usage_per_mount_and_io_counters() -> None:
    source = FixedDisks([Partition("/dev/vda", "/", "ext4")], frozenset({"vda"}), DISKSTATS)
    assert DiskCollector(source).collect() == {
        "disks": [{"mount": "/", "total_bytes": 1000, "used_bytes": 250, "free_bytes": 750}],
        "disk_io": {
            "read_bytes_total": 3306834 * 512,
            "write_bytes_total": 6833784 * 512,
            "read_ops_total": 42870,
            "write_ops_total": 68935,
        },
    }


def test_mount_list_is_read_again_only_after_the_refresh_time() -> None:
    now = [0.0]
    source = FixedDisks([Partition("/dev/vda", "/", "ext4")], frozenset({"vda"}), DISKSTATS)
    disk = DiskCollector(source, refresh_s=60, clock=lambda: now[0])
    for t in (0.0, 30.0, 59.9, 60.0, 90.0, 120.5):
        now[0] = t
        disk.collect()
    assert source.layout_reads == 3  # at 0, 60 and 120.5


def test_disk_without_block_devices_has_no_io() -> None:
    assert DiskCollector(FixedDisks([], frozenset(), "")).collect() == {
        "disks": [],
        "disk_io": None,
    }


# -- network ---------------------------------------------------------------------


def test_network_sums_all_interfaces_but_loopback() -> None:
    nics = {
        "lo": NicCounters(10**9, 10**9, 5, 5, 5, 5),
        "eth0": NicCounters(100, 200, 1, 2, 3, 4),
        "virbr0": NicCounters(10, 20, 0, 0, 1, 0),
    }
    assert totals(nics) == {
        "bytes_sent_total": 110,
        "bytes_recv_total": 220,
        "errors_in_total": 1,
        "errors_out_total": 2,
        "drops_in_total": 4,
        "drops_out_total": 4,
    }
    assert NetworkCollector(nics=lambda: nics).collect()["network"]["bytes_sent_total"] == 110


# -- pressure ----------------------------------------------------------------------


def test_psi_avg10_percent_becomes_ratio() -> None:
    assert parse_some_avg10(PSI_CPU) == pytest.approx(0.125)
    assert parse_some_avg10(PSI_IO) == 1.0


@pytest.mark.parametrize("text", ["", "full avg10=1.00\n", "some avg10=x avg60=0\n"])
def test_psi_without_some_avg10_is_malformed(text: str) -> None:
    with pytest.raises(MalformedPressure):
        parse_some_avg10(text)


def test_pressure_from_fixture_files(tmp_path: Path) -> None:
    proc = write_psi(tmp_path, cpu=PSI_CPU, memory=PSI_MEMORY, io=PSI_IO)
    assert PressureCollector(proc).collect() == {
        "pressure_available": True,
        "pressure": {"cpu": pytest.approx(0.125), "memory": 0.0, "io": 1.0},
    }


def test_kernel_without_psi_is_unavailable_not_an_error(tmp_path: Path) -> None:
    outcome = run_isolated(PressureCollector(tmp_path))
    assert outcome.success
    assert outcome.fields == {"pressure_available": False, "pressure": None}


def test_pressure_reports_the_resources_it_has(tmp_path: Path) -> None:
    proc = write_psi(tmp_path, cpu=PSI_CPU)
    fields = PressureCollector(proc).collect()
    assert fields == {"pressure_available": True, "pressure": {"cpu": pytest.approx(0.125)}}


def test_malformed_pressure_file_fails_the_collector(tmp_path: Path) -> None:
    proc = write_psi(tmp_path, cpu="garbage\n")
    outcome = run_isolated(PressureCollector(proc))
    assert not outcome.success
    assert outcome.error is not None and "MalformedPressure" in outcome.error


# -- isolation -----------------------------------------------------------------------


class Broken:
    name = "broken"

    def collect(self) -> dict[str, object]:
        raise RuntimeError("no /proc here")


def test_a_failing_collector_is_recorded_and_the_others_still_report() -> None:
    load = LoadCollector(loadavg=lambda: (1.0, 2.0, 3.0))
    outcomes = [run_isolated(Broken()), run_isolated(load)]
    metrics = merge(outcomes)
    assert metrics["load1"] == 1.0
    statuses = {s["name"]: s for s in metrics["collectors"]}
    assert statuses["broken"]["success"] is False
    assert statuses["broken"]["error"] == "RuntimeError: no /proc here"
    assert statuses["load"]["success"] is True and "error" not in statuses["load"]
    assert all(s["duration_s"] >= 0 for s in statuses.values())
    HostMetrics.model_validate(metrics)


def test_duration_is_measured_per_collector() -> None:
    ticks = iter([10.0, 10.25])
    outcome = run_isolated(LoadCollector(loadavg=lambda: (0, 0, 0)), clock=lambda: next(ticks))
    assert outcome.duration_s == pytest.approx(0.25)


def test_error_text_fits_the_protocol() -> None:
    assert len(describe_error(ValueError("x" * 2000))) == 512
    assert describe_error(KeyError()) == "KeyError"
    # The broker refuses control characters in report text.
    text = describe_error(OSError("first line\nsecond\x00\tthird\x85"))
    assert text == "OSError: first line second  third "
    CollectorStatus(name="x", success=False, duration_s=0, error=text)


def test_collector_changes_name_a_failure_once_and_its_end() -> None:
    ok, bad = Outcome("pressure", True, 0.0), Outcome("pressure", False, 0.0, "OSError: x")
    first = collector_changes({}, [ok, Outcome("cpu", True, 0.0)])
    assert first.failing == {} and first.started == () and first.ended == ()
    began = collector_changes(first.failing, [bad])
    assert began.started == (("pressure", "OSError: x"),) and began.ended == ()
    same = collector_changes(began.failing, [bad])
    assert same.started == () and same.failing == {"pressure": "OSError: x"}
    other = collector_changes(same.failing, [Outcome("pressure", False, 0.0, "OSError: y")])
    assert other.started == (("pressure", "OSError: y"),)
    back = collector_changes(other.failing, [ok])
    assert back.ended == ("pressure",) and back.failing == {}
