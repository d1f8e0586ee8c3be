"""Gateway logins: the one-time ticket as password and nothing else; reuse, expiry,
wrong and other users' tickets refused; failures counted, audited without the
ticket, and slowed down per source; the login timeout."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

import asyncssh
import pytest

from broker.clock import FakeClock
from broker.gateway.reasons import TICKET_REFUSED
from broker.gateway.slowdown import SHARED_SOURCE_GRACE
from tests.support.gateway import (
    Rig,
    echo,
    gateway_rig,
    gateway_settings,
    refused_locally,
    rig_fixture,
    run_ssh,
    ssh_client,
    until,
)
from tests.support.scrape import samples, value

DENIED = "Permission denied"


rig = pytest.fixture(rig_fixture)


async def login(rig: Rig, ticket: str, user: str = "maria", *extra: str) -> bool:
    """Does ssh get past the login? (It asks for a command, which the gateway then
    refuses, so it ends at once either way.)"""
    done = await run_ssh(ticket, rig.port, user, *extra, f"{user}@127.0.0.1", "true")
    return "Authenticated to 127.0.0.1" in done.stderr


async def test_a_ticket_opens_one_connection_only(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    ticket = answer["connect"]["ticket"]
    async with rig.forward(answer) as f:
        assert await echo(f.local_port, b"first") == b"first"
    assert not await login(rig, ticket)
    failed = await rig.audit("gateway_auth_failed")
    assert [(e.username, e.result, e.source_ip) for e in failed] == [
        ("maria", "invalid_ticket", "127.0.0.1")
    ]


async def test_an_expired_ticket_is_refused(rig: Rig, clock: FakeClock) -> None:
    answer = await rig.desktop_for("maria")
    clock.advance(rig.rt.settings.ticket_ttl_s + 1)
    assert not await login(rig, answer["connect"]["ticket"])
    # A fresh one (asked for after the wait) works.
    fresh = await rig.fresh(answer)
    assert await login(rig, fresh["connect"]["ticket"])


async def test_wrong_and_other_users_tickets_are_refused(rig: Rig) -> None:
    maria = await rig.desktop_for("maria")
    await rig.desktop_for("jonas")
    assert not await login(rig, secrets.token_urlsafe(32))
    assert not await login(rig, "")
    # maria's ticket in jonas's name: refused, and spent (it has leaked).
    assert not await login(rig, maria["connect"]["ticket"], "jonas")
    assert not await login(rig, maria["connect"]["ticket"], "maria")
    assert len(await rig.audit("gateway_auth_failed")) == 4


async def test_openssh_users_are_told_why_a_ticket_is_refused(rig: Rig, clock: FakeClock) -> None:
    """Plain OpenSSH says only "Permission denied"; the gateway's login banner says
    what to do, in the same words for every refused ticket."""
    answer = await rig.desktop_for("maria")
    clock.advance(rig.rt.settings.ticket_ttl_s + 1)
    expired = answer["connect"]["ticket"]
    for ticket in (expired, secrets.token_urlsafe(32)):
        done = await run_ssh(ticket, rig.port, "maria", "maria@127.0.0.1", "true")
        assert DENIED in done.stderr
        assert " ".join(done.stderr.split()).count(TICKET_REFUSED) >= 1
    fresh = await rig.fresh(answer)
    done = await run_ssh(fresh["connect"]["ticket"], rig.port, "maria", "maria@127.0.0.1", "true")
    assert TICKET_REFUSED not in " ".join(done.stderr.split())


async def test_a_ticket_of_an_ended_session_is_refused(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    sid = answer["session"]["id"]
    ended = await rig.client.delete(f"/api/v1/sessions/{sid}", headers=answer["headers"])
    assert ended.status_code == 200
    assert not await login(rig, answer["connect"]["ticket"])
    failed = await rig.audit("gateway_auth_failed")
    assert failed[-1].result == "session_not_connectable"


async def test_no_ticket_reaches_a_desktop_its_host_no_longer_reports(rig: Rig) -> None:
    """The VM is undefined on its host; its address may be another machine's by now.
    A ticket issued before that, and a connection open since then, reach nothing."""
    answer = await rig.desktop_for("maria")
    spare = await rig.fresh(answer)  # a second ticket, issued while the desktop was there
    async with rig.forward(answer) as f:
        assert await echo(f.local_port, b"before") == b"before"
        del rig.agent.desktops[answer["session"]["desktop"]]
        await rig.agent.report()
        assert await refused_locally(f.local_port)  # no new tunnel on the open link
    assert not await login(rig, spare["connect"]["ticket"])
    failed = await rig.audit("gateway_auth_failed")
    assert [e.result for e in failed] == ["session_not_connectable"]


async def test_only_password_logins_are_offered(rig: Rig) -> None:
    answer = await rig.desktop_for("maria")
    done = await run_ssh(
        answer["connect"]["ticket"], rig.port, "maria", "-o",
        "PreferredAuthentications=publickey,keyboard-interactive,hostbased,gssapi-with-mic",
        "-o", "PubkeyAuthentication=yes", "-N", "maria@127.0.0.1",
    )  # fmt: skip
    assert done.returncode == 255
    # OpenSSH prints the methods the server lists: the password alone.
    assert "Permission denied (password)" in done.stderr
    # The ticket was never tried, so it still works.
    assert await login(rig, answer["connect"]["ticket"])


async def test_failures_are_counted_audited_without_the_ticket_and_slowed(rig: Rig) -> None:
    await rig.desktop_for("maria")
    guesses = [secrets.token_urlsafe(32) for _ in range(5)]
    took = []
    for guess in guesses[:4]:
        started = time.monotonic()
        assert not await login(rig, guess, "mallory")
        took.append(time.monotonic() - started)
    # 0.2 s after one failure, doubling up to 0.8 s (the rig's settings): the
    # fourth answer waited at least 0.8 s.
    assert took[3] >= 0.8
    assert rig.gateway.delays.delay("127.0.0.1", "mallory") == 0.8
    assert rig.gateway.delays.delay("127.0.0.2", "mallory") == 0  # other sources are not
    # A name OpenSSH would not send is logged as typed.
    odd = "mallory'; DROP TABLE users;--"
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh_client(rig.port, odd, guesses[4])
    scrape = samples((await rig.client.get("/metrics")).text)
    assert value(scrape, "vdi_gateway_auth_failures_total") == 5
    failed = await rig.audit("gateway_auth_failed")
    assert [e.username for e in failed] == ["mallory"] * 4 + [odd]
    assert {e.source_ip for e in failed} == {"127.0.0.1"}
    stored = json.dumps([[e.username, e.result, e.detail, e.user_agent] for e in failed])
    assert not any(guess in stored for guess in guesses)


async def test_failures_from_a_shared_address_do_not_slow_down_the_others(rig: Rig) -> None:
    """Staff behind one NAT share an address: one person's stale tickets do not
    delay another's correct one, while many names failing from one address slow
    the address down as a whole."""
    maria = await rig.desktop_for("maria")
    for _ in range(4):
        assert not await login(rig, secrets.token_urlsafe(32), "felix")
    assert rig.gateway.delays.delay("127.0.0.1", "felix") == 0.8
    assert rig.gateway.delays.delay("127.0.0.1", "maria") == 0
    assert await login(rig, maria["connect"]["ticket"], "maria")

    for n in range(SHARED_SOURCE_GRACE):  # a different name each time
        assert not await login(rig, secrets.token_urlsafe(32), f"guess{n}")
    assert rig.gateway.delays.delay("127.0.0.1", "somebody-new") > 0
    assert rig.gateway.delays.delay("127.0.0.2", "somebody-new") == 0


async def test_the_login_timeout_closes_silent_connections(
    tmp_path: Path, sqlite_url: str, clock: FakeClock
) -> None:
    settings = gateway_settings(tmp_path, sqlite_url, gateway_login_timeout_s=1)
    async with gateway_rig(settings, clock) as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        assert (await reader.readline()).startswith(b"SSH-2.0-VDI_Gateway")
        started = time.monotonic()
        # Say nothing: the gateway hangs up after the login timeout.
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert time.monotonic() - started < 5
        writer.close()
        # A client that negotiates but never logs in is cut off too.
        with pytest.raises((asyncssh.Error, OSError)):
            async with ssh_client(
                r.port, "maria", None, preferred_auth="keyboard-interactive"
            ) as conn:
                await asyncio.wait_for(conn.wait_closed(), 10)


async def _banner(port: int) -> tuple[bytes, asyncio.StreamWriter]:
    """Open a connection and read what the gateway says first (b"" if it hangs up)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return await asyncio.wait_for(reader.readline(), 10), writer


async def test_logins_under_way_are_limited_per_source(
    tmp_path: Path, sqlite_url: str, clock: FakeClock
) -> None:
    settings = gateway_settings(tmp_path, sqlite_url, gateway_max_startups_per_source=2)
    async with gateway_rig(settings, clock) as r:
        answer = await r.desktop_for("maria")
        async with r.forward(answer) as f:
            # A logged-in connection does not count: two more may log in.
            first, w1 = await _banner(r.port)
            second, w2 = await _banner(r.port)
            assert first.startswith(b"SSH-2.0-VDI_Gateway")
            assert second.startswith(b"SSH-2.0-VDI_Gateway")
            # A third is dropped before the handshake; the tunnel is untouched.
            third, w3 = await _banner(r.port)
            assert third == b""
            w3.close()
            assert await echo(f.local_port, b"still there") == b"still there"
            # Once one of the two goes, a newcomer is let in again.
            w1.close()

            async def one_left() -> bool:
                return len(r.gateway.connections) == 2

            await until(one_left)
            fourth, w4 = await _banner(r.port)
            assert fourth.startswith(b"SSH-2.0-VDI_Gateway")
            for w in (w2, w4):
                w.close()
