"""Everything but a tunnel to one's own desktop is refused: other destinations (with
the real OpenSSH client's -L and -W), shells, commands, sftp and scp, remote and
Unix-socket forwarding, tun devices; asyncssh as a client shows the exact codes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from broker.clock import FakeClock
from broker.gateway.service import MAX_REFUSALS
from broker.ports import free_port
from tests.support.gateway import (
    SSH_OPTIONS,
    Rig,
    echo,
    gateway_rig,
    gateway_settings,
    refused_locally,
    rig_fixture,
    run_ssh,
    ssh_client,
    ssh_forward,
    until,
)

PROHIBITED = "administratively prohibited"


rig = pytest.fixture(rig_fixture)


def bad_targets(
    mine: tuple[str, int], other_desktop: int, broker_port: int
) -> list[tuple[str, str]]:
    """-L targets that must all be refused, with the desktop at 127.0.0.1:port (the
    rig allows loopback desktops), and the reason the audit log gives."""
    address, port = mine
    return [
        (f"{address}:{other_desktop}", "other_port"),  # another user's desktop
        (f"{address}:{broker_port}", "other_port"),  # the gateway itself
        (f"{address}:5432", "other_port"),  # the database
        (f"{address}:22", "other_port"),
        (f"localhost:{port}", "not_an_address"),  # a name for the right place
        (f"127.1:{port}", "not_an_address"),
        (f"0x7f.0.0.1:{port}", "not_an_address"),
        (f"2130706433:{port}", "not_an_address"),
        (f"0177.0.0.1:{port}", "not_an_address"),
        (f"127.0.0.2:{port}", "other_destination"),
        (f"[::1]:{port}", "other_destination"),
        (f"[::ffff:127.0.0.1]:{port}", "not_canonical"),
        (f"[::ffff:7f00:1]:{port}", "ipv4_mapped"),
        ("169.254.169.254:80", "metadata"),
        (f"169.254.1.1:{port}", "link_local"),
        (f"[fe80::1]:{port}", "link_local"),
        (f"0.0.0.0:{port}", "not_unicast"),
        (f"10.20.0.15:{port}", "other_destination"),
    ]


async def test_every_other_destination_is_refused_with_ssh_L(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    other = await rig.desktop_for("jonas")
    c = answer["connect"]
    mine = (c["desktop_address"], c["desktop_port"])
    cases = bad_targets(mine, other["connect"]["desktop_port"], rig.port)
    targets = [target for target, _ in cases]
    # A connection is closed after MAX_REFUSALS refused forwards: a few per ssh.
    per_connection = MAX_REFUSALS - 1
    for start in range(0, len(targets), per_connection):
        batch = targets[start : start + per_connection]
        fresh = await rig.fresh(answer)
        async with forwards(fresh["connect"]["ticket"], rig.port, batch) as ports:
            for target, port in zip(batch, ports, strict=True):
                assert await refused_locally(port), target
    refused = await rig.audit("tunnel_refused")
    assert [((e.detail or {})["requested"], e.result) for e in refused] == [
        (target.replace("[", "").replace("]", ""), why) for target, why in cases
    ]
    assert await rig.audit("tunnel_opened") == []
    # The right target still works for the same user.
    async with rig.forward(await rig.fresh(answer)) as f:
        assert await echo(f.local_port, b"mine") == b"mine"


async def test_tunnels_of_a_connection_hung_up_for_refusals_say_so(rig: Rig) -> None:
    """The gateway hangs up after MAX_REFUSALS refused forwards; a tunnel of that
    connection still open is audited with that reason, not as closed by the client."""
    answer = await rig.desktop_for("maria")
    c = answer["connect"]
    good = f"{c['desktop_address']}:{c['desktop_port']}"
    bad = [f"10.20.0.15:{c['desktop_port']}"] * MAX_REFUSALS
    async with forwards(c["ticket"], rig.port, [good, *bad]) as ports:
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[0])
        try:
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 30) == b"ping"
            await until(lambda: rig.audit("tunnel_opened"))
            for port in ports[1:]:
                await refused_locally(port)
            closed = await until(lambda: rig.audit("tunnel_closed"))
        finally:
            writer.close()
    assert [e.result for e in closed] == ["too_many_refusals"]
    assert len(await rig.audit("tunnel_refused")) == MAX_REFUSALS


@contextlib.asynccontextmanager
async def forwards(ticket: str, port: int, targets: list[str]) -> AsyncIterator[list[int]]:
    """One ssh process with an -L per target; yields the local ports."""
    more = [free_port() for _ in targets[1:]]
    extra = [
        arg
        for local, target in zip(more, targets[1:], strict=True)
        for arg in ("-L", f"127.0.0.1:{local}:{target}")
    ]
    async with ssh_forward(ticket, port, "maria", targets[0], *extra) as f:
        yield [f.local_port, *more]


@pytest.mark.parametrize(
    "target",
    [
        "127.0.0.1:5432",  # direct-tcpip to the database
        "/run/postgresql/.s.PGSQL.5432",  # direct-streamlocal to its Unix socket
    ],
)
async def test_ssh_says_administratively_prohibited(rig: Rig, target: str) -> None:
    answer = await rig.desktop_for("maria")
    async with ssh_forward(answer["connect"]["ticket"], rig.port, "maria", target) as f:
        assert await refused_locally(f.local_port)
        f.proc.terminate()
        assert PROHIBITED in await f.stderr()


async def test_stdio_forward_W_only_to_the_desktop(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    c = answer["connect"]
    done = await run_ssh(c["ticket"], rig.port, "maria", "-W", "127.0.0.1:5432", "maria@127.0.0.1")
    assert done.returncode != 0 and PROHIBITED in done.stderr
    fresh = await rig.fresh(answer)
    proc = await asyncio.create_subprocess_exec(
        "sshpass", "-e", "ssh", *SSH_OPTIONS, "-p", str(rig.port),
        "-W", f"{c['desktop_address']}:{c['desktop_port']}", "maria@127.0.0.1",
        env={**os.environ, "SSHPASS": fresh["connect"]["ticket"]},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"via stdio")
    assert await asyncio.wait_for(proc.stdout.readexactly(9), 20) == b"via stdio"
    proc.stdin.close()
    await asyncio.wait_for(proc.wait(), 20)


@pytest.mark.parametrize(
    ("program", "args"),
    [
        ("ssh", ["-T", "maria@127.0.0.1"]),  # a shell
        ("ssh", ["-tt", "maria@127.0.0.1"]),  # a shell with a pty
        ("ssh", ["maria@127.0.0.1", "cat /etc/passwd"]),  # a command
        ("ssh", ["-A", "-X", "maria@127.0.0.1", "true"]),  # agent and X11 forwarding
        ("ssh", ["-s", "maria@127.0.0.1", "sftp"]),  # a subsystem
        ("sftp", ["maria@127.0.0.1"]),
        ("scp", ["maria@127.0.0.1:/etc/passwd", "/dev/null"]),  # scp over sftp
        ("scp", ["-O", "maria@127.0.0.1:/etc/passwd", "/dev/null"]),  # classic scp: exec
    ],
)
async def test_no_session_channels(rig: Rig, program: str, args: list[str]) -> None:
    answer = await rig.desktop_for("maria")
    done = await run_ssh(answer["connect"]["ticket"], rig.port, "maria", *args, program=program)
    assert done.returncode != 0
    assert PROHIBITED in done.stderr, done.stderr


@pytest.mark.parametrize(
    "spec",
    [
        ["-R", "127.0.0.1:0:127.0.0.1:22"],  # tcpip-forward
        ["-R", "/tmp/vdi-test-remote.sock:127.0.0.1:22"],  # streamlocal-forward
    ],
)
async def test_no_remote_forwarding(rig: Rig, spec: list[str]) -> None:
    answer = await rig.desktop_for("maria")
    done = await run_ssh(
        answer["connect"]["ticket"], rig.port, "maria", "-N", "-o", "ExitOnForwardFailure=yes",
        *spec, "maria@127.0.0.1",
    )  # fmt: skip
    assert done.returncode == 255
    assert "forwarding failed" in done.stderr


async def test_asyncssh_client_gets_administratively_prohibited(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    c = answer["connect"]
    async with ssh_client(rig.port, "maria", c["ticket"]) as conn:
        bad: list[tuple[str, Any]] = [
            ("session", conn.create_session(asyncssh.SSHClientSession)),
            ("direct-tcpip", conn.open_connection("127.0.0.1", 5432)),
            ("direct-streamlocal", conn.open_unix_connection("/run/postgresql/.s.PGSQL.5432")),
            ("tun", conn.open_tun()),
        ]
        for what, attempt in bad:
            with pytest.raises(asyncssh.ChannelOpenError) as refused:
                await attempt
            assert refused.value.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, what
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 22)
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_path("/tmp/vdi-test.sock", "/tmp/x.sock")
        # The connection has collected 4 refusals; the right target still works.
        reader, writer = await conn.open_connection(c["desktop_address"], c["desktop_port"])
        writer.write(b"ok")
        assert await reader.readexactly(2) == b"ok"
        writer.close()


async def test_a_connection_that_keeps_probing_is_closed(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    c = answer["connect"]
    conn = await ssh_client(rig.port, "maria", c["ticket"])
    try:
        for port in range(5430, 5430 + MAX_REFUSALS):
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", port)
        await asyncio.wait_for(conn.wait_closed(), 5)
    finally:
        conn.close()
    assert len(await rig.audit("tunnel_refused")) == MAX_REFUSALS


async def test_loopback_desktops_are_refused_by_default(
    tmp_path: Path, sqlite_url: str, clock: FakeClock
) -> None:
    """Production default: an agent reporting a desktop on 127.0.0.1 does not open
    the broker machine to users, even for exactly that endpoint."""
    settings = gateway_settings(tmp_path, sqlite_url, gateway_allow_loopback=False)
    async with gateway_rig(settings, clock) as r:
        answer = await r.desktop_for("maria")
        c = answer["connect"]
        async with ssh_client(r.port, "maria", c["ticket"]) as conn:
            with pytest.raises(asyncssh.ChannelOpenError) as refused:
                await conn.open_connection(c["desktop_address"], c["desktop_port"])
            assert refused.value.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
        events = await until(lambda: r.audit("tunnel_refused"))
        assert events[0].result == "loopback"
