"""Disk space per mounted real filesystem, and cumulative disk I/O counters.

The mount list and the set of physical disks change rarely but cost the most to
read (psutil's partition listing, a /sys lookup per block device), so they are
read again only every REFRESH_S; space and I/O counters are read every cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.collectors.base import Fields
from agent.procfs import read_kernel_file
from agent.protocol_base import MAX_DISKS, MOUNT_MAX_LENGTH, has_control

REFRESH_S = 60.0
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's size

# Filesystems that hold no data of their own (as node_exporter's default exclusion):
# read-only images, overlays of containers, kernel interfaces.
PSEUDO_FSTYPES = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
        "devpts", "devtmpfs", "erofs", "fusectl", "hugetlbfs", "iso9660", "mqueue",
        "nsfs", "overlay", "proc", "procfs", "pstore", "rpc_pipefs", "securityfs",
        "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Partition:
    device: str
    mount: str
    fstype: str


@dataclass(frozen=True)
class Usage:
    total: int
    used: int
    free: int


@dataclass(frozen=True)
class IoReading:
    read_bytes: int
    write_bytes: int
    read_count: int
    write_count: int


class DiskSource(Protocol):
    def partitions(self) -> list[Partition]: ...
    def usage(self, mount: str) -> Usage: ...
    def disks(self) -> frozenset[str]:
        """Names of the physical block devices whose I/O is counted."""
        ...

    def diskstats(self) -> str:
        """The text of /proc/diskstats."""
        ...


class HostDisks:
    """This host: psutil for mounts and space, /proc and /sys for I/O."""

    def __init__(self, proc: Path = Path("/proc"), sysfs: Path = Path("/sys")) -> None:
        self._proc = proc
        self._sysfs = sysfs

    def partitions(self) -> list[Partition]:
        import psutil

        return [
            Partition(p.device, p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=False)
        ]

    def usage(self, mount: str) -> Usage:
        import psutil

        u = psutil.disk_usage(mount)
        return Usage(u.total, u.used, u.free)

    def disks(self) -> frozenset[str]:
        # A device link means real hardware (or a virtual disk of a VM); loop, ram,
        # zram, device-mapper and md devices have none and would count I/O twice
        # or count none at all.
        block = self._sysfs / "block"
        try:
            return frozenset(d.name for d in block.iterdir() if (d / "device").exists())
        except FileNotFoundError:
            return frozenset()

    def diskstats(self) -> str:
        try:
            return read_kernel_file(self._proc / "diskstats")
        except FileNotFoundError:  # no block devices visible, as in some containers
            return ""


def real_mounts(partitions: Iterable[Partition]) -> list[Partition]:
    """Mounts of real filesystems, each device once (bind mounts repeat a device;
    the shortest mount path names it), at most MAX_DISKS. A mount path the report
    cannot carry (too long, or with a control character) is left out."""
    by_device: dict[str, Partition] = {}
    for p in partitions:
        if p.fstype in PSEUDO_FSTYPES or len(p.mount) > MOUNT_MAX_LENGTH or has_control(p.mount):
            continue
        known = by_device.get(p.device)
        if known is None or len(p.mount) < len(known.mount):
            by_device[p.device] = p
    return sorted(by_device.values(), key=lambda p: p.mount)[:MAX_DISKS]


def sum_diskstats(text: str, disks: frozenset[str]) -> IoReading | None:
    """I/O of the given disks summed from /proc/diskstats; None if none is listed.
    Fields after major, minor and name: reads completed, reads merged, sectors
    read, ms reading, writes completed, writes merged, sectors written, ..."""
    found = False
    reads = writes = sectors_read = sectors_written = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or fields[2] not in disks:
            continue
        found = True
        reads += int(fields[3])
        sectors_read += int(fields[5])
        writes += int(fields[7])
        sectors_written += int(fields[9])
    if not found:
        return None
    return IoReading(sectors_read * SECTOR_BYTES, sectors_written * SECTOR_BYTES, reads, writes)


class DiskCollector:
    name = "disk"

    def __init__(
        self,
        source: DiskSource | None = None,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source or HostDisks()
        self._refresh_s = refresh_s
        self._clock = clock
        self._read_at: float | None = None
        self._mounts: list[Partition] = []
        self._disks: frozenset[str] = frozenset()

    def _layout(self) -> tuple[list[Partition], frozenset[str]]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._refresh_s:
            self._mounts = real_mounts(self._source.partitions())
            self._disks = self._source.disks()
            self._read_at = now
        return self._mounts, self._disks

    def collect(self) -> Fields:
        mounts, disks = self._layout()
        space = []
        for p in mounts:
            u = self._source.usage(p.mount)
            space.append(
                {
                    "mount": p.mount,
                    "total_bytes": u.total,
                    "used_bytes": u.used,
                    "free_bytes": u.free,
                }
            )
        io = sum_diskstats(self._source.diskstats(), disks)
        disk_io = None
        if io is not None:
            disk_io = {
                "read_bytes_total": io.read_bytes,
                "write_bytes_total": io.write_bytes,
                "read_ops_total": io.read_count,
                "write_ops_total": io.write_count,
            }
        return {"disks": space, "disk_io": disk_io}
