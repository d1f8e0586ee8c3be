"""Static desktops from a TOML file, probed like any other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.collectors.probes import probe_all
from agent.hypervisors.base import HypervisorError
from agent.hypervisors.static import StaticHypervisor, StaticListError
from agent.protocol import ActionKind, PowerState


async def test_static_desktops_are_listed_running_and_probed(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = tmp_path / "desktops.toml"
    path.write_text(
        f'[[desktop]]\nname = "ts-01"\naddress = "127.0.0.1"\nport = {port}\nprotocol = "tcp"\n'
        'pool = "Terminalserver"\n\n'
        '[[desktop]]\nname = "pc-01"\naddress = "127.0.0.1"\nport = 1\nprotocol = "tcp"\n'
    )
    hypervisor = StaticHypervisor.from_file(path)
    try:
        desktops = await hypervisor.desktops()
        assert [(d.name, d.pool, d.power_state) for d in desktops] == [
            ("ts-01", "Terminalserver", PowerState.RUNNING),
            ("pc-01", None, PowerState.RUNNING),
        ]
        outcomes = await probe_all(desktops, timeout_s=1.0)
        assert outcomes["ts-01"].ok
        assert outcomes["pc-01"].error == "refused"
    finally:
        server.close()


async def test_power_actions_are_not_supported(tmp_path: Path) -> None:
    path = tmp_path / "desktops.toml"
    path.write_text('[[desktop]]\nname = "pc-01"\naddress = "10.0.0.1"\n')
    hypervisor = StaticHypervisor.from_file(path)
    with pytest.raises(HypervisorError, match="not supported for static desktops"):
        await hypervisor.perform(ActionKind.START, "pc-01")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(StaticListError, match="cannot read"):
        StaticHypervisor.from_file(tmp_path / "absent.toml")
    path = tmp_path / "desktops.toml"
    path.write_text('[[desktop]]\nname = "pc 01"\n')
    with pytest.raises(StaticListError, match=str(path)):
        StaticHypervisor.from_file(path)
