"""The real OpenSSH client through the gateway to a simulated desktop: the RDP
handshake and megabytes both ways, session state driven by channels, the audit
trail and the metrics of a tunnel."""

from __future__ import annotations

import asyncio
import os

import asyncssh
import pytest

from agent.handshake import connection_confirm, connection_request
from agent.protocol_base import ActionKind
from tests.support.gateway import Rig, echo, rig_fixture, run_ssh, ssh_client, target, until
from tests.support.scrape import samples, value

MB = 1024 * 1024


rig = pytest.fixture(rig_fixture)


async def test_openssh_forward_carries_megabytes_both_ways(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    c = answer["connect"]
    assert c["host_key_fingerprint"] == rig.rt.gateway_fingerprint
    assert c["host_key_fingerprint"].startswith("SHA256:")
    payload = b"x" + os.urandom(4 * MB)
    async with rig.forward(answer) as fwd:
        reader, writer = await asyncio.open_connection("127.0.0.1", fwd.local_port)
        # The desktop answers an RDP client's first bytes as a console would ...
        writer.write(connection_request())
        assert await reader.readexactly(len(connection_confirm())) == connection_confirm()
        # ... and the tunnel carries megabytes both ways, unchanged.
        sender = asyncio.create_task(_send(writer, payload))
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 60) == payload
        await sender
        assert await rig.state(answer) == "active"
        scrape = samples((await rig.client.get("/metrics")).text)
        assert value(scrape, "vdi_gateway_tunnels") == 1
        writer.close()

    closed = await until(lambda: rig.audit("tunnel_closed"))
    detail = closed[0].detail or {}
    assert detail["destination"] == target(answer)
    assert detail["bytes_up"] >= len(payload) + len(connection_request())
    assert detail["bytes_down"] >= len(payload) + len(connection_confirm())
    assert detail["duration_s"] > 0
    assert closed[0].username == "maria" and closed[0].source_ip == "127.0.0.1"
    opened = await rig.audit("tunnel_opened")
    assert (opened[0].detail or {})["destination"] == target(answer)
    scrape = samples((await rig.client.get("/metrics")).text)
    assert value(scrape, "vdi_gateway_tunnels") == 0
    assert value(scrape, "vdi_gateway_bytes_total", direction="upstream") >= len(payload)
    assert value(scrape, "vdi_gateway_bytes_total", direction="downstream") >= len(payload)


async def _send(writer: asyncio.StreamWriter, payload: bytes) -> None:
    for start in range(0, len(payload), 1 << 16):
        writer.write(payload[start : start + (1 << 16)])
        await writer.drain()


async def test_first_channel_activates_last_channel_disconnects(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    async with rig.forward(answer) as f:
        first = await asyncio.open_connection("127.0.0.1", f.local_port)
        second = await asyncio.open_connection("127.0.0.1", f.local_port)
        for reader, writer in (first, second):
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
        assert len(rig.gateway.tunnels) == 2
        assert await rig.state(answer) == "active"

        first[1].close()
        await until(lambda: _count(rig, 1))
        assert await rig.state(answer) == "active"  # one tunnel is still open

        second[1].close()
        await until(lambda: _count(rig, 0))
        assert await until(lambda: rig.is_state(answer, "disconnected"))

    # A new ticket reconnects: the same session, active again.
    again = await rig.fresh(answer)
    assert again["session"]["id"] == answer["session"]["id"]
    async with rig.forward(again) as f:
        assert await echo(f.local_port, b"back again") == b"back again"
        assert await rig.state(answer) == "active"


async def _count(rig: Rig, n: int) -> bool:
    return len(rig.gateway.tunnels) == n


async def test_the_gateway_offers_strict_key_exchange(rig: Rig) -> None:
    """Terrapin: the server's KEXINIT carries kex-strict-s-v00@openssh.com, and the
    OpenSSH client (which supports it) switches to strict mode."""
    answer = await rig.desktop_for("maria")
    # A command: the gateway refuses the session channel, so ssh ends right
    # after the handshake and login.
    done = await run_ssh(
        answer["connect"]["ticket"], rig.port, "maria", "-vvv", "maria@127.0.0.1", "true"
    )
    assert "kex-strict-s-v00@openssh.com" in done.stderr
    assert "will use strict KEX ordering" in done.stderr
    assert "Authenticated to 127.0.0.1" in done.stderr
    assert done.returncode != 0


async def test_a_desktop_that_does_not_answer_fails_the_channel_only(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    c = answer["connect"]
    await rig.hv.perform(ActionKind.STOP, answer["session"]["desktop"])  # listener closed
    async with ssh_client(rig.port, "maria", c["ticket"]) as conn:
        with pytest.raises(asyncssh.ChannelOpenError) as failed:
            await conn.open_connection(c["desktop_address"], c["desktop_port"])
        assert failed.value.code == asyncssh.OPEN_CONNECT_FAILED
        assert "does not answer" in failed.value.reason
        # The desktop comes back on its port: the same connection can tunnel again.
        await rig.hv.perform(ActionKind.START, answer["session"]["desktop"])
        reader, writer = await conn.open_connection(c["desktop_address"], c["desktop_port"])
        writer.write(b"back")
        assert await reader.readexactly(4) == b"back"
        writer.close()
    assert len(await until(lambda: rig.audit("tunnel_closed"))) == 1  # only the real one
