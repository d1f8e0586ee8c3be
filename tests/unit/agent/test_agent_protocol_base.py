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
