"""agent.protocol still offers everything it did; the limits the agent checks by
hand (agent.protocol_base) are the ones the pydantic models enforce."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import agent.protocol as protocol
import agent.protocol_base as base


def test_protocol_reexports_the_same_objects() -> None:
    for name in ("PowerState", "ActionKind", "PROTOCOL_VERSION", "SUPPORTED_VERSIONS",
                 "MAX_DESKTOPS", "MAX_DISKS", "MAX_ACTIONS"):  # fmt: skip
        assert getattr(protocol, name) is getattr(base, name)
        assert name in protocol.__all__


def accepts(model: type[BaseModel], **fields: Any) -> bool:
    try:
        model.model_validate(fields)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("model", "field", "limit", "base_fields"),
    [
        (protocol.DesktopReport, "name", base.NAME_MAX_LENGTH, {"power_state": "running"}),
        (protocol.DesktopReport, "pool", base.LABEL_MAX_LENGTH,
         {"name": "a", "power_state": "running"}),
        (protocol.ActionResult, "id", base.ACTION_ID_MAX_LENGTH, {"ok": True}),
        (protocol.ActionResult, "error", base.ERROR_MAX_LENGTH, {"id": "a", "ok": False}),
        (protocol.DiskStats, "mount", base.MOUNT_MAX_LENGTH,
         {"total_bytes": 1, "used_bytes": 1, "free_bytes": 0}),
    ],
)  # fmt: skip
def test_string_limits_match(
    model: type[BaseModel], field: str, limit: int, base_fields: dict[str, Any]
) -> None:
    assert accepts(model, **base_fields, **{field: "a" * limit})
    assert not accepts(model, **base_fields, **{field: "a" * (limit + 1)})


def test_interval_limit_matches() -> None:
    assert accepts(protocol.ReportResponse, interval_s=base.MAX_INTERVAL_S)
    assert not accepts(protocol.ReportResponse, interval_s=base.MAX_INTERVAL_S + 0.001)


def test_control_characters_are_the_same_to_the_agent_and_the_protocol() -> None:
    """The agent keeps control characters out by hand (has_control, one_line);
    the models refuse them by pattern. Both must mean the same characters."""
    for code in [*range(0x300), 0x2028, 0x202E, 0xFEFF, 0x10FFFF]:
        char = chr(code)
        assert accepts(protocol.ActionResult, id=f"a{char}b", ok=True) != base.has_control(char)
        assert not base.has_control(base.one_line(f"a{char}b", 10))
    assert base.has_control("\x00") and base.has_control("\x7f") and base.has_control("\x9f")
    assert not base.has_control("Grünflächenamt – Außendienst")


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("10.0.0.5", "10.0.0.5"),
        ("2001:DB8::0001", "2001:db8::1"),
        ("127.1", None),
        ("010.0.0.1", None),
        ("vnc.example.org", None),
        ("fe80::1%eth0", None),
        ("fe80::1%" + "x" * 80, None),
        ("10.0.0.5\x00", None),
    ],
)
def test_ip_literal(value: str, canonical: str | None) -> None:
    if canonical is None:
        with pytest.raises(ValueError):
            base.ip_literal(value)
        assert not accepts(protocol.DesktopReport, name="a", power_state="running", address=value)
    else:
        assert base.ip_literal(value) == canonical
        report = protocol.DesktopReport(name="a", power_state="running", address=value)
        assert report.address == canonical


def test_connections_limit_matches_the_column() -> None:
    fields = {"name": "a", "power_state": "running"}
    assert accepts(protocol.DesktopReport, **fields, connections=base.MAX_CONNECTIONS)
    assert not accepts(protocol.DesktopReport, **fields, connections=base.MAX_CONNECTIONS + 1)
