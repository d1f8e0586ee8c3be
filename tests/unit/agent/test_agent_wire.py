"""The report's JSON and the broker's answer, checked against agent.protocol."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.collectors.probes import ProbeOutcome
from agent.hypervisors.base import ConsoleProtocol, Desktop
from agent.protocol import ActionKind, PowerState, Report, ReportResponse
from agent.wire import (
    MAX_REPORT_BYTES,
    Action,
    BadResponse,
    ReportHeader,
    build_report,
    desktop_entry,
    encode_report,
    parse_response,
    valid_name,
)

HEADER = ReportHeader("vhost01", "0.1.0", 42, dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC), 30.0)
METRICS: dict[str, Any] = {"cpus": 2, "collectors": []}


def test_desktop_entry_takes_the_agents_pool_and_leaves_out_what_is_unknown() -> None:
    stopped = Desktop("vm-1", PowerState.STOPPED, protocol=ConsoleProtocol.VNC)
    assert desktop_entry(stopped, None, None) == {"name": "vm-1", "power_state": "stopped"}
    running = Desktop("vm-2", PowerState.RUNNING, None, "10.0.0.2", 3389, connections=1)
    assert desktop_entry(running, "Verwaltung", ProbeOutcome(True, 0.002)) == {
        "name": "vm-2",
        "power_state": "running",
        "pool": "Verwaltung",
        "address": "10.0.0.2",
        "port": 3389,
        "probe": {"ok": True, "latency_s": 0.002},
        "connections": 1,
    }
    own_pool = Desktop("vm-3", PowerState.RUNNING, pool="Bauamt")
    assert desktop_entry(own_pool, "Verwaltung", None)["pool"] == "Bauamt"


def test_built_report_is_a_protocol_report() -> None:
    desktops = [desktop_entry(Desktop("vm-1", PowerState.RUNNING, None, "::1", 5900), "P", None)]
    results = [{"id": "a1", "ok": True, "power_state": "running"}]
    report = Report.model_validate(build_report(HEADER, METRICS, desktops, results))
    assert report.seq == 42 and report.host == "vhost01"
    assert report.created_at == HEADER.created_at
    assert report.desktops[0].address == "::1" and report.desktops[0].pool == "P"
    assert report.action_results[0].id == "a1"


def synthetic_desktops(count: int, name: str = "desktop-{:04d}", pool: str = "Verwaltung-Finanzen"):
    return [
        desktop_entry(
            Desktop(
                name.format(i),
                PowerState.RUNNING,
                pool,
                f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                3389,
                ConsoleProtocol.RDP,
                connections=1,
            ),
            None,
            ProbeOutcome(True, 0.012345678),
        )
        for i in range(count)
    ]


def test_report_with_5000_desktops_stays_under_one_mib() -> None:
    report = build_report(HEADER, METRICS, synthetic_desktops(5000), [])
    body = encode_report(report)
    assert len(body) < 1024 * 1024
    assert len(Report.model_validate_json(body).desktops) == 5000


def test_a_report_that_cannot_fit_carries_as_many_desktops_as_fit() -> None:
    long_name = "d" * 120 + "-{:04d}"
    desktops = synthetic_desktops(5000, name=long_name, pool="P" * 64)
    report = build_report(HEADER, METRICS, desktops, [])
    assert len(json.dumps(report)) > MAX_REPORT_BYTES
    body = encode_report(report)
    assert MAX_REPORT_BYTES - 400 < len(body) <= MAX_REPORT_BYTES
    kept = Report.model_validate_json(body).desktops
    assert 0 < len(kept) < 5000 and kept[0].name == long_name.format(0)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("sim-001", True), ("a", True), ("a b", False), ("-x", False), ("x\n", False), ("", False)],
)
def test_valid_name(name: str, ok: bool) -> None:
    assert valid_name(name) is ok


def test_parse_response() -> None:
    body = b'{"actions":[{"id":"a1","kind":"stop","desktop":"sim-002"}],"interval_s":15}'
    response = parse_response(body)
    assert response.actions == [Action("a1", ActionKind.STOP, "sim-002")]
    assert response.interval_s == 15.0


@pytest.mark.parametrize(
    "body",
    [
        b"<html>",
        b"[]",
        b'{"actions":[]}',
        b'{"interval_s":0}',
        b'{"interval_s":3601}',
        b'{"interval_s":true}',
        b'{"interval_s":5,"actions":{}}',
        b'{"interval_s":5,"actions":[{"id":"","kind":"stop","desktop":"a"}]}',
        b'{"interval_s":5,"actions":[{"id":"a\\u0000","kind":"stop","desktop":"a"}]}',
        b'{"interval_s":5,"actions":[{"id":"x","kind":"explode","desktop":"a"}]}',
        b'{"interval_s":5,"actions":[{"id":"x","kind":"stop","desktop":"a b"}]}',
    ],
)
def test_bad_responses_are_refused(body: bytes) -> None:
    with pytest.raises(BadResponse):
        parse_response(body)


def accepts_protocol(body: bytes) -> bool:
    try:
        ReportResponse.model_validate_json(body)
    except ValidationError:
        return False
    return True


def accepts_wire(body: bytes) -> bool:
    try:
        parse_response(body)
    except BadResponse:
        return False
    return True


names = st.one_of(
    st.sampled_from(["sim-001", "a", "x" * 128, "x" * 129, "-bad", "a b", "ok.name_1"]),
    st.text(max_size=8),
)
actions = st.fixed_dictionaries(
    {
        "id": st.text(min_size=0, max_size=70),
        "kind": st.sampled_from([*(k.value for k in ActionKind), "explode", ""]),
        "desktop": names,
    }
)
intervals = st.one_of(
    st.integers(-5, 4000), st.floats(allow_nan=False, allow_infinity=False, width=32)
)


@given(st.lists(actions, max_size=3), intervals)
def test_wire_accepts_exactly_what_the_protocol_accepts(
    action_list: list[dict[str, str]], interval: float
) -> None:
    body = json.dumps({"actions": action_list, "interval_s": interval}).encode()
    assert accepts_wire(body) == accepts_protocol(body)
    if accepts_wire(body):
        model = ReportResponse.model_validate_json(body)
        parsed = parse_response(body)
        assert parsed.interval_s == model.interval_s
        assert [(a.id, a.kind, a.desktop) for a in parsed.actions] == [
            (a.id, a.kind, a.desktop) for a in model.actions
        ]
