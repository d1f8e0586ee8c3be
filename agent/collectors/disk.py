"""Disk space per mounted real filesystem, and cumulative disk I/O counters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from agent.collectors.base import Fields
from agent.protocol_base import MAX_DISKS, MOUNT_MAX_LENGTH

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
    def io(self) -> IoReading | None: ...


class PsutilDisks:
    def partitions(self) -> list[Partition]:
        import psutil

        return [
            Partition(p.device, p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=False)
        ]

    def usage(self, mount: str) -> Usage:
        import psutil

        u = psutil.disk_usage(mount)
        return Usage(u.total, u.used, u.free)

    def io(self) -> IoReading | None:
        import psutil

        c = psutil.disk_io_counters(perdisk=False)
        if c is None:  # no block devices visible, as in some containers
            return None
        return IoReading(c.read_bytes, c.write_bytes, c.read_count, c.write_count)


def real_mounts(partitions: Iterable[Partition]) -> list[Partition]:
    """Mounts of real filesystems, each device once (bind mounts repeat a device;
    the shortest mount path names it), at most MAX_DISKS."""
    by_device: dict[str, Partition] = {}
    for p in partitions:
        if p.fstype in PSEUDO_FSTYPES or len(p.mount) > MOUNT_MAX_LENGTH:
            continue
        known = by_device.get(p.device)
        if known is None or len(p.mount) < len(known.mount):
            by_device[p.device] = p
    return sorted(by_device.values(), key=lambda p: p.mount)[:MAX_DISKS]


class DiskCollector:
    name = "disk"

    def __init__(self, source: DiskSource | None = None) -> None:
        self._source = source or PsutilDisks()

    def collect(self) -> Fields:
        disks = []
        for p in real_mounts(self._source.partitions()):
            u = self._source.usage(p.mount)
            disks.append(
                {
                    "mount": p.mount,
                    "total_bytes": u.total,
                    "used_bytes": u.used,
                    "free_bytes": u.free,
                }
            )
        io = self._source.io()
        disk_io = None
        if io is not None:
            disk_io = {
                "read_bytes_total": io.read_bytes,
                "write_bytes_total": io.write_bytes,
                "read_ops_total": io.read_count,
                "write_ops_total": io.write_count,
            }
        return {"disks": disks, "disk_io": disk_io}
