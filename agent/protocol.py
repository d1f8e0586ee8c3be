"""The report and action schema between vdi-agent and the broker, versioned.

This module is the single source of truth: the broker imports it, the agent
never imports the broker. Bump PROTOCOL_VERSION for incompatible changes; a
broker accepts the versions it lists in SUPPORTED_VERSIONS.

Counters in a report (probes, timeouts, network, disk I/O) are cumulative since
the agent's state was created and survive agent restarts and broker outages, so
nothing is lost while reports cannot be delivered.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# The enumerations and limits live in protocol_base so the agent's report loop can
# use them without pydantic; they are re-exported here unchanged.
from agent.protocol_base import (
    ACTION_ID_MAX_LENGTH,
    CONTROL_CHARACTERS,
    ERROR_MAX_LENGTH,
    HYPERVISOR_COLLECTOR,
    LABEL_MAX_LENGTH,
    MAX_ACTIONS,
    MAX_CONNECTIONS,
    MAX_DESKTOPS,
    MAX_DISKS,
    MOUNT_MAX_LENGTH,
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    ActionKind,
    PowerState,
    ip_literal,
)

__all__ = [
    "HYPERVISOR_COLLECTOR",
    "MAX_ACTIONS",
    "MAX_DESKTOPS",
    "MAX_DISKS",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Action",
    "ActionKind",
    "ActionResult",
    "CollectorStatus",
    "DesktopReport",
    "DiskIO",
    "DiskStats",
    "HostMetrics",
    "NetworkStats",
    "PowerState",
    "PressureStats",
    "ProbeResult",
    "ProbeStats",
    "Report",
    "ReportResponse",
]

# Free text: any characters but control characters (protocol_base.CONTROL_CHARACTERS).
_TEXT = f"^[^{CONTROL_CHARACTERS}]*$"

Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
Label = Annotated[str, Field(min_length=1, max_length=LABEL_MAX_LENGTH, pattern=_TEXT)]
# Numbers are strict: pydantic would read true as 1 (a console at port 1, a
# ratio of 1.0), 3.0 as 3 and "5" as 5, which only a broken sender sends.
Ratio = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(strict=True, ge=0.0)]
# Counters fit the broker's 64-bit integer columns; more is a broken agent.
Count = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
ErrorText = Annotated[str, Field(max_length=ERROR_MAX_LENGTH, pattern=_TEXT)]
ActionId = Annotated[str, Field(min_length=1, max_length=ACTION_ID_MAX_LENGTH, pattern=_TEXT)]
IpLiteral = Annotated[str, AfterValidator(ip_literal)]


def _unique(kind: str, names: list[str]) -> None:
    """A name given twice would be two contradicting entries for one thing."""
    if len(set(names)) == len(names):
        return
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{kind} {name} is listed more than once")
        seen.add(name)


class _Model(BaseModel):
    # Floats are finite: "Infinity" or 1e400 in a report is a broken agent, and
    # +Inf would reach the metrics as a real value.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ProbeResult(_Model):
    """One TCP connect to the desktop's console port."""

    ok: bool
    latency_s: NonNegative | None = None
    error: Literal["timeout", "refused", "unreachable", "error"] | None = None


class DesktopReport(_Model):
    name: Name
    pool: Label | None = None  # None: the agent's --pool, else the broker's naming rule
    power_state: PowerState
    address: IpLiteral | None = None
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] | None = None
    probe: ProbeResult | None = None
    # Established client connections on the console port, where the agent can see
    # them (simulated desktops, libvirt consoles on the host); None where it cannot.
    # The broker keeps them in a 32-bit column.
    connections: Annotated[int, Field(strict=True, ge=0, le=MAX_CONNECTIONS)] | None = None


class CollectorStatus(_Model):
    """Per-collector outcome, as node_exporter's scrape_collector_success."""

    name: Label
    success: bool
    duration_s: NonNegative
    error: ErrorText | None = None


class PressureStats(_Model):
    """PSI "some avg10" as a ratio 0..1 per resource."""

    cpu: Ratio | None = None
    memory: Ratio | None = None
    io: Ratio | None = None


class DiskStats(_Model):
    mount: Annotated[str, Field(max_length=MOUNT_MAX_LENGTH, pattern=_TEXT)]
    total_bytes: Count
    used_bytes: Count
    free_bytes: Count


class DiskIO(_Model):
    read_bytes_total: Count = 0
    write_bytes_total: Count = 0
    read_ops_total: Count = 0
    write_ops_total: Count = 0


class NetworkStats(_Model):
    bytes_sent_total: Count = 0
    bytes_recv_total: Count = 0
    errors_in_total: Count = 0
    errors_out_total: Count = 0
    drops_in_total: Count = 0
    drops_out_total: Count = 0


class ProbeStats(_Model):
    probes_total: Count = 0
    timeouts_total: Count = 0
    latency_mean_s: NonNegative | None = None  # mean over the last round's successes


class HostMetrics(_Model):
    """Host load. A field is None when its collector failed or has no data yet."""

    cpu_utilization_ratio: Ratio | None = None
    cpus: Annotated[int, Field(strict=True, ge=1, le=4096)] | None = None
    load1: NonNegative | None = None
    load5: NonNegative | None = None
    load15: NonNegative | None = None
    memory_total_bytes: Count | None = None
    memory_available_bytes: Count | None = None
    memory_used_bytes: Count | None = None
    pressure_available: bool = False
    pressure: PressureStats | None = None
    disks: Annotated[list[DiskStats], Field(max_length=MAX_DISKS)] = []
    disk_io: DiskIO | None = None
    network: NetworkStats | None = None
    probes: ProbeStats = ProbeStats()
    # Most desktops this host should run at once (the "resource ceiling");
    # None: the broker counts the host's desktops.
    session_capacity: Annotated[int, Field(strict=True, ge=0, le=1_000_000)] | None = None
    collectors: Annotated[list[CollectorStatus], Field(max_length=32)] = []


class ActionResult(_Model):
    id: ActionId
    ok: bool
    error: ErrorText | None = None
    power_state: PowerState | None = None


class Report(_Model):
    version: Annotated[int, Field(strict=True)] = PROTOCOL_VERSION
    host: Name
    agent_version: Annotated[str, Field(min_length=1, max_length=64, pattern=_TEXT)]
    seq: Annotated[int, Field(strict=True, ge=0, le=2**62)]
    created_at: dt.datetime
    interval_s: Annotated[float, Field(strict=True, gt=0, le=3600)]
    metrics: HostMetrics
    desktops: Annotated[list[DesktopReport], Field(max_length=MAX_DESKTOPS)] = []
    action_results: Annotated[list[ActionResult], Field(max_length=MAX_ACTIONS)] = []

    @property
    def desktops_listed(self) -> bool:
        """Whether the hypervisor's listing worked: else a desktop left out of
        `desktops` may still exist (HYPERVISOR_COLLECTOR)."""
        return not any(
            c.name == HYPERVISOR_COLLECTOR and not c.success for c in self.metrics.collectors
        )

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("created_at needs a time zone")
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is year 0 in UTC
            raise ValueError("created_at lies outside the years 1 to 9999 in UTC") from None

    @field_validator("desktops")
    @classmethod
    def _unique_desktops(cls, value: list[DesktopReport]) -> list[DesktopReport]:
        _unique("desktop", [d.name for d in value])
        return value

    @field_validator("action_results")
    @classmethod
    def _unique_results(cls, value: list[ActionResult]) -> list[ActionResult]:
        _unique("action", [r.id for r in value])
        return value

    @field_validator("version")
    @classmethod
    def _supported(cls, value: int) -> int:
        if value not in SUPPORTED_VERSIONS:
            raise ValueError(f"protocol version {value} is not supported")
        return value


class Action(_Model):
    """A power action for one desktop; delivered until its result is reported."""

    id: ActionId
    kind: ActionKind
    desktop: Name


class ReportResponse(_Model):
    actions: list[Action] = []
    interval_s: Annotated[float, Field(strict=True, gt=0, le=3600)]
