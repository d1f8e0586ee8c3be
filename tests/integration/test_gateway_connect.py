"""`vdi-connect` end to end: a real `vdi-broker serve` with its gateway, a real
`vdi-agent` with a simulated desktop, and vdi-connect as a process. Between
vdi-connect and the gateway sits a TCP proxy that can cut the connection (a
network drop) or lead to an impostor gateway. Waiting for a starting desktop runs
in process against the real app."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import asyncssh
import pytest
from sqlalchemy import func, select

from agent.protocol import ActionKind, PowerState
from broker.clock import FakeClock, SystemClock
from broker.config import load_settings
from broker.connect import (
    BAD_INPUT,
    FIRST_CONNECT_TRIES,
    GATEWAY_PROBLEM,
    INTERRUPTED,
    NO_BROKER,
    NO_DESKTOP,
    Broker,
    LocalForward,
    Stop,
    first_connect,
    open_ssh,
    use_language,
    wait_ready,
)
from broker.hosts import service as hosts
from broker.ports import free_port
from broker.runtime import Runtime, open_runtime
from broker.store.tables import AuditEvent, Desktop, Session, Ticket
from tests.support.accounts import PASSWORD, add_user
from tests.support.fleet import add_pool, staff
from tests.support.gateway import (
    Rig,
    TcpProxy,
    echo,
    gateway_rig,
    gateway_settings,
    refused_locally,
    rig_fixture,
    ssh_client,
    until,
)
from tests.support.httpproxy import SwitchableProxy
from tests.support.processes import VENV_BIN, clean_env, start_agent, start_broker, stop
from tests.support.terminal import Terminal, ctrl_c_as_at_a_terminal
from tests.support.totp import oathtool_code


@dataclass
class Stack:
    data: Path
    base: str
    proxy_port: int
    gateway_port: int
    totp: dict[str, str]
    broker_pid: int


async def _prepare(data: Path, token_file: Path) -> dict[str, str]:
    rt = await open_runtime(load_settings(None, data_dir=data), clock=SystemClock())
    try:
        await add_pool(rt)
        secret = await add_user(rt, "maria")
        await add_user(rt, "newbie", enrol=False)
        token = await hosts.add(rt, "vhost01", "test")
    finally:
        await rt.close()
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    assert secret is not None
    return {"maria": secret}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    data = tmp_path / "data"
    totp = asyncio.run(_prepare(data, tmp_path / "token"))
    gateway_port, proxy_port = free_port(), free_port()
    broker, base = start_broker(
        data,
        gateway_enabled="true",
        gateway_port=str(gateway_port),
        gateway_public_port=str(proxy_port),  # clients go through the proxy
        gateway_allow_loopback="true",
        cookie_secure="false",
        report_interval="1",
        job_interval_s="0.5",
    )
    agent = start_agent(
        base, tmp_path / "token", tmp_path / "agent", "vhost01",
        "--simulated-desktops", "1", "--pool", "Finanzen",
    )  # fmt: skip
    try:
        asyncio.run(_desktop_running(data))
        yield Stack(data, base, proxy_port, gateway_port, totp, broker.pid)
    finally:
        stop(agent)
        stop(broker)


async def _desktop_running(data: Path) -> None:
    rt = await open_runtime(load_settings(None, data_dir=data), migrate_schema=False)
    try:

        async def running() -> bool:
            async with rt.db.read() as s:
                states = (await s.scalars(select(Desktop.power_state))).all()
            return list(states) == ["running"]

        await until(running, timeout=30, step=0.2)
    finally:
        await rt.close()


@contextlib.asynccontextmanager
async def runtime_of(stack: Stack) -> AsyncIterator[Runtime]:
    rt = await open_runtime(load_settings(None, data_dir=stack.data), migrate_schema=False)
    try:
        yield rt
    finally:
        await rt.close()


def desktop_locale(lang: str | None = None) -> dict[str, str]:
    """The locale vdi-connect runs under: `lang`, else an English desktop,
    whatever the developer's own is."""
    return {"LANG": lang or "C.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}


class Connect:
    """vdi-connect as a process, its output read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(
        cls,
        stack: Stack,
        user: str,
        password: str,
        code: str,
        *,
        path: str | None = None,
        pool: str = "Finanzen",
        lang: str | None = None,
        base: str | None = None,
    ) -> Connect:
        """With `path`, the desktop client is looked up there; else none is started.
        With `lang`, vdi-connect runs on a desktop in that locale (LANG)."""
        options = ["--no-client"] if path is None else []
        extra = desktop_locale(lang)
        if path:
            extra["PATH"] = path
        proc = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "vdi-connect"), base or stack.base, "--user", user, "--pool", pool,
            "--password-stdin", *options,
            env=clean_env({**extra, **DIAGNOSE}), preexec_fn=ctrl_c_as_at_a_terminal,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(f"{password}\n{code}\n".encode())
        await proc.stdin.drain()
        proc.stdin.close()
        return cls(proc)

    async def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {pattern!r} in:\n" + "".join(self.lines))
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            except TimeoutError:
                continue
            if not line:
                raise AssertionError(f"ended without {pattern!r}:\n" + "".join(self.lines))
            self.lines.append(line.decode())
            found = re.search(pattern, self.lines[-1])
            if found:
                return found

    async def finish(self, timeout: float = 20) -> int:
        assert self.proc.stdout is not None
        try:
            rest = await asyncio.wait_for(self.proc.stdout.read(), timeout)
        except TimeoutError:
            # Where it hangs: faulthandler (DIAGNOSE) prints every thread's stack.
            self.proc.send_signal(signal.SIGABRT)
            rest = await asyncio.wait_for(self.proc.stdout.read(), timeout)
            raise AssertionError(
                "still running:\n" + self.output + rest.decode(errors="replace")
            ) from None
        self.lines.append(rest.decode())
        return await asyncio.wait_for(self.proc.wait(), timeout)

    @property
    def output(self) -> str:
        return "".join(self.lines)


# vdi-connect prints the stacks of all its threads on SIGABRT: what a test that
# finds it hanging shows.
DIAGNOSE = {"PYTHONFAULTHANDLER": "1"}


def code_for(stack: Stack, user: str, offset_s: int = 0) -> str:
    return oathtool_code(stack.totp[user], dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s))


async def test_connects_forwards_and_reconnects_after_a_drop(stack: Stack) -> None:
    proxy = await TcpProxy(stack.gateway_port).start(stack.proxy_port)
    connect = await Connect.start(stack, "maria", PASSWORD, code_for(stack, "maria"))
    try:
        verified = await connect.expect(r"Gateway host key verified: (SHA256:\S+)")
        env = clean_env({"VDI_DATA_DIR": str(stack.data)})
        status = subprocess.run(
            [str(VENV_BIN / "vdi-broker"), "status"], env=env, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        assert verified.group(1) in status.stdout  # the key vdi-broker status shows
        port = int((await connect.expect(r"Tunnel open: 127\.0\.0\.1:(\d+) ")).group(1))
        await connect.expect(r"xfreerdp /v:127\.0\.0\.1:" + str(port))  # what to run
        payload = b"x" + os.urandom(256 * 1024)
        assert await echo(port, payload) == payload

        proxy.drop()  # the network drops
        await connect.expect("connection to the gateway was lost")
        await connect.expect("Reconnected")
        # The same local port works again, through a new ticket and tunnel.
        assert await echo(port, b"after the drop") == b"after the drop"

        async with runtime_of(stack) as rt, rt.db.read() as s:
            opened = (
                await s.scalars(select(AuditEvent).where(AuditEvent.event == "tunnel_opened"))
            ).all()
            sessions = (await s.scalars(select(Session))).all()
        assert len(opened) == 2 and len(sessions) == 1  # one session, two tunnels

        connect.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert await connect.finish() == 0
        assert "Disconnecting" in connect.output

        async def disconnected() -> bool:
            async with runtime_of(stack) as rt, rt.db.read() as s:
                return await s.scalar(select(Session.state)) == "disconnected"

        await until(disconnected, timeout=10, step=0.2)
        async with runtime_of(stack) as rt, rt.db.read() as s:
            events = (await s.scalars(select(AuditEvent.event))).all()
        assert "logout" in events
    finally:
        if connect.proc.returncode is None:
            connect.proc.kill()
        await proxy.close()


async def test_a_drop_while_the_broker_answers_errors_is_not_final(stack: Stack) -> None:
    """The gateway drops while the proxy in front of the broker answers 502 (the
    broker restarting), then 429 with Retry-After: vdi-connect keeps trying, as
    told, and gets back in once the broker answers again."""
    proxy = await TcpProxy(stack.gateway_port).start(stack.proxy_port)
    web = await SwitchableProxy(int(stack.base.rsplit(":", 1)[1])).start()
    connect = await Connect.start(stack, "maria", PASSWORD, code_for(stack, "maria"), base=web.base)
    try:
        port = int((await connect.expect(r"Tunnel open: 127\.0\.0\.1:(\d+) ")).group(1))
        assert await echo(port, b"before") == b"before"

        for status, retry_after, wait in ((502, None, r"\d+"), (429, "3", "3")):
            web.fail(status, retry_after)
            proxy.drop()
            await connect.expect("connection to the gateway was lost")
            await connect.expect(
                rf"Reconnecting failed \(The broker answered {status}\.\); next try in {wait} s"
            )
            web.pass_through()
            await connect.expect("Reconnected")
            assert await echo(port, b"after %d" % status) == b"after %d" % status

        connect.proc.send_signal(signal.SIGINT)
        assert await connect.finish() == 0
        assert "answered 502: " not in connect.output  # said once, not twice
    finally:
        if connect.proc.returncode is None:
            connect.proc.kill()
        await proxy.close()
        await web.close()


async def test_the_first_connection_is_tried_again(stack: Stack) -> None:
    """A gateway not reachable yet (restarting, a load balancer switching over):
    vdi-connect tries again with backoff and gets in once it is back."""
    connect = await Connect.start(stack, "maria", PASSWORD, code_for(stack, "maria"))
    try:
        await connect.expect(r"did not let us in .*trying again in 1 s")
        proxy = await TcpProxy(stack.gateway_port).start(stack.proxy_port)
        try:
            await connect.expect("Gateway host key verified")
            port = int((await connect.expect(r"Tunnel open: 127\.0\.0\.1:(\d+) ")).group(1))
            assert await echo(port, b"through at last") == b"through at last"
        finally:
            connect.proc.send_signal(signal.SIGINT)
            assert await connect.finish() == 0
            await proxy.close()
    finally:
        if connect.proc.returncode is None:
            connect.proc.kill()


async def test_ctrl_c_ends_promptly_when_the_broker_hangs(stack: Stack) -> None:
    """A broker that stops answering (here: stopped with SIGSTOP) does not hold
    vdi-connect after Ctrl-C: the logout gives up after a few seconds."""
    proxy = await TcpProxy(stack.gateway_port).start(stack.proxy_port)
    connect = await Connect.start(stack, "maria", PASSWORD, code_for(stack, "maria"))
    try:
        await connect.expect("Tunnel open")
        os.kill(stack.broker_pid, signal.SIGSTOP)
        started = asyncio.get_running_loop().time()
        connect.proc.send_signal(signal.SIGINT)
        assert await connect.finish(timeout=20) == 0
        assert asyncio.get_running_loop().time() - started < 15
    finally:
        os.kill(stack.broker_pid, signal.SIGCONT)
        if connect.proc.returncode is None:
            connect.proc.kill()
        await proxy.close()


async def test_asks_on_the_terminal_which_pool(stack: Stack) -> None:
    """A user who may use several pools and gave no --pool is asked, after the
    login, instead of being sent away with a code that is then spent."""
    proxy = await TcpProxy(stack.gateway_port).start(stack.proxy_port)
    term = await at_the_pool_question(stack)
    try:
        assert "1) Außendienst" in term.seen and "2) Finanzen" in term.seen
        term.send("9")
        await term.expect("a number from 1 to 2")
        term.send("2")
        await term.expect("Asking for a desktop in pool Finanzen")
        await term.expect("Tunnel open")
        assert PASSWORD not in term.seen  # typed with echo off
        os.kill(term.pid, signal.SIGINT)
        assert await term.exit_code() == 0
    finally:
        term.kill()
        await proxy.close()


def terminal_connect(base: str, lang: str | None = None) -> Terminal:
    """vdi-connect for maria on a terminal, without --pool."""
    argv = [str(VENV_BIN / "vdi-connect"), base, "--user", "maria", "--no-client"]
    return Terminal(argv, clean_env({**desktop_locale(lang), **DIAGNOSE}))


async def at_the_pool_question(stack: Stack) -> Terminal:
    """maria, who may use two pools, logged in on a terminal and asked which."""
    async with runtime_of(stack) as rt:
        await add_pool(rt, "Außendienst", departments=["Finanzen"])
    term = terminal_connect(stack.base)
    try:
        await term.expect("Password for maria:")
        term.send(PASSWORD)
        await term.expect("Code from your authenticator app:")
        term.send(code_for(stack, "maria"))
        await term.expect("Which pool (1-2)?")
    except BaseException:
        term.kill()
        raise
    return term


@pytest.mark.parametrize(
    ("lang", "prompt", "said"),
    [(None, "Password for maria:", "Cancelled."), ("de_DE.UTF-8", "Passwort für", "Abgebrochen.")],
)
async def test_ctrl_c_at_the_password_prompt_ends_at_once(
    lang: str | None, prompt: str, said: str
) -> None:
    """The prompts block the event loop, where asyncio's Ctrl-C only cancels at
    the next await: the first Ctrl-C went unseen, and vdi-connect quit only
    after the person had typed their password and code."""
    term = terminal_connect(f"http://127.0.0.1:{free_port()}", lang)
    try:
        await term.expect(prompt)
        await term.ctrl_c_at_the_question()
        await term.expect(said, timeout=5)
        assert await term.exit_code(timeout=5) == INTERRUPTED
    finally:
        term.kill()


async def test_ctrl_c_at_the_pool_question_ends_at_once_and_logs_out(stack: Stack) -> None:
    term = await at_the_pool_question(stack)
    try:
        await term.ctrl_c_at_the_question()
        await term.expect("Cancelled.", timeout=10)
        assert await term.exit_code(timeout=10) == INTERRUPTED
    finally:
        term.kill()
    async with runtime_of(stack) as rt, rt.db.read() as s:
        events = (await s.scalars(select(AuditEvent.event))).all()
        sessions = (await s.scalars(select(Session))).all()
    assert "logout" in events and sessions == []


class Impostor(asyncssh.SSHServer):
    passwords: ClassVar[list[str]] = []

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        Impostor.passwords.append(password)
        return True


async def test_an_impostor_gateway_never_sees_the_ticket(stack: Stack) -> None:
    """Someone between user and gateway answers with another host key: vdi-connect
    stops before logging in, so the one-time ticket never reaches them."""
    impostor = await asyncssh.create_server(
        Impostor, "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")]
    )
    proxy = await TcpProxy(impostor.get_port()).start(stack.proxy_port)
    try:
        connect = await Connect.start(stack, "maria", PASSWORD, code_for(stack, "maria"))
        assert await connect.finish() == 6
        assert "someone may be intercepting" in connect.output
        assert Impostor.passwords == []
    finally:
        await proxy.close()
        impostor.close()


async def test_enrolment_first_and_wrong_passwords_in_plain_words(stack: Stack) -> None:
    newbie = await Connect.start(stack, "newbie", PASSWORD, "123456")
    assert await newbie.finish() == 3
    assert f"{stack.base}/" in newbie.output and "authenticator app first" in newbie.output
    wrong = await Connect.start(stack, "maria", "not the password", code_for(stack, "maria"))
    assert await wrong.finish() == 1
    assert "Wrong user name, password or code." in wrong.output


async def test_vdi_connect_and_refusals_speak_the_language_of_the_desktop(stack: Stack) -> None:
    async with runtime_of(stack) as rt:
        await add_pool(rt, "Bauhof", departments=["Bauhof"])  # not for Finanzen staff
        jonas = await add_user(rt, "jonas")
    assert jonas is not None
    english = await Connect.start(
        stack, "maria", PASSWORD, code_for(stack, "maria"), pool="Bauhof", lang="en_GB.UTF-8"
    )
    assert await english.finish() == NO_DESKTOP
    assert "Logging in to" in english.output
    assert "No desktop for you right now: You are not entitled to use pool Bauhof." in (
        english.output
    )
    code = oathtool_code(jonas, dt.datetime.now(dt.UTC))
    german = await Connect.start(stack, "jonas", PASSWORD, code, pool="Bauhof", lang="de_DE.UTF-8")
    assert await german.finish() == NO_DESKTOP
    # vdi-connect's own words are German too, not only the broker's refusal.
    assert f"Anmeldung bei {stack.base} als jonas ..." in german.output
    assert (
        "Im Moment gibt es keinen Desktop für Sie: "
        "Sie sind für den Pool Bauhof nicht freigeschaltet."
    ) in german.output


async def test_a_mistyped_pool_is_named_with_the_pools_one_may_use(stack: Stack) -> None:
    english = await Connect.start(
        stack, "maria", PASSWORD, code_for(stack, "maria"), pool="Finanzamt", lang="en_GB.UTF-8"
    )
    assert await english.finish() == BAD_INPUT
    assert "There is no pool Finanzamt. Pools you may use: Finanzen" in english.output
    async with runtime_of(stack) as rt:
        jonas = await add_user(rt, "jonas")
    assert jonas is not None
    code = oathtool_code(jonas, dt.datetime.now(dt.UTC))
    german = await Connect.start(
        stack, "jonas", PASSWORD, code, pool="finanzen", lang="de_DE.UTF-8"
    )
    assert await german.finish() == BAD_INPUT
    assert "Es gibt keinen Pool finanzen. Pools, die Sie nutzen dürfen: Finanzen" in german.output


FAKE_XFREERDP = """#!{python}
# Stands in for xfreerdp: connects where /v: says, checks the echo, and quits
# as a user closing the desktop window would.
import socket, sys
host, port = sys.argv[1].removeprefix("/v:").rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(b"hello desktop")
    got = b""
    while len(got) < 13:
        got += s.recv(13 - len(got))
open({result!r}, "w").write(got.decode() + " " + " ".join(sys.argv[1:]))
"""


async def test_starts_the_desktop_client_and_ends_with_it(stack: Stack, tmp_path: Path) -> None:
    """A program named xfreerdp on the PATH is started with /v:127.0.0.1:PORT; when
    it exits (the user closed the desktop), vdi-connect disconnects."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    result = tmp_path / "client-saw"
    client = bin_dir / "xfreerdp"
    client.write_text(FAKE_XFREERDP.format(python=sys.executable, result=str(result)))
    client.chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    proxy = await TcpProxy(stack.gateway_port).start(stack.proxy_port)
    try:
        connect = await Connect.start(stack, "maria", PASSWORD, code_for(stack, "maria"), path=path)
        assert await connect.finish(timeout=30) == 0, connect.output
    finally:
        await proxy.close()
    assert "Starting xfreerdp /v:127.0.0.1:" in connect.output
    assert "The desktop client has closed; disconnecting." in connect.output
    saw = result.read_text()
    assert saw.startswith("hello desktop /v:127.0.0.1:")


rig = pytest.fixture(rig_fixture)


async def test_waits_while_the_desktop_starts(rig: Rig) -> None:
    """vdi-connect's waiting, against the real app: the only desktop is off, the
    request is pending (202) until the agent has started it."""
    for name in rig.agent.desktops:
        rig.agent.set_power(name, PowerState.STOPPED)
    await rig.agent.report()
    who = await staff(rig.rt, "maria")
    rig.client.headers["cookie"] = who["cookie"]
    broker = Broker(rig.client, "https://testserver/")
    broker.csrf = who["X-CSRF-Token"]
    answer = await broker.request("Finanzen")
    assert answer["result"] == "pending" and answer["connect"] is None
    waiting = asyncio.create_task(wait_ready(broker, answer, wait_s=30))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    started = await rig.agent.obey()  # the agent starts the desktop and reports it
    assert [a["kind"] for a in started] == ["start"]
    ready = await waiting
    assert ready.session_id == answer["session"]["id"]
    assert ready.fingerprint == rig.rt.gateway_fingerprint and ready.ticket


async def test_a_desktop_that_stops_answering_is_said_in_the_desktops_language(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    """The desktop client connects while the desktop is down (its host failed,
    it restarts): a German desktop was told "Die Verbindung zum Desktop ließ
    sich nicht öffnen: Your desktop does not answer.", the gateway's English."""
    who = await staff(rig.rt, "maria")
    rig.client.headers["cookie"] = who["cookie"]
    broker = Broker(rig.client, "https://testserver/")
    broker.csrf = who["X-CSRF-Token"]
    d = await wait_ready(broker, await broker.request("Finanzen"), wait_s=5)
    assert d.desktop is not None
    await rig.hv.perform(ActionKind.STOP, d.desktop)  # the broker has not heard yet
    forward = LocalForward(0)
    await forward.start()
    conn = await open_ssh(d)
    use_language("de")
    try:
        forward.use(conn, (d.desktop_address, d.desktop_port))
        assert await refused_locally(forward.port)
    finally:
        use_language(None)
        await forward.close()
        conn.close()
    said = capsys.readouterr().out
    assert "Die Verbindung zum Desktop ließ sich nicht öffnen: Ihr Desktop antwortet nicht" in said


async def test_a_gateway_that_stays_away_ends_with_the_gateway_code(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each try takes a fresh ticket from the broker; after the last one
    vdi-connect gives up with exit code 6 and says where it tried."""
    who = await staff(rig.rt, "maria")
    rig.client.headers["cookie"] = who["cookie"]
    broker = Broker(rig.client, "https://testserver/")
    broker.csrf = who["X-CSRF-Token"]
    d = await wait_ready(broker, await broker.request("Finanzen"), wait_s=5)
    port = rig.gateway.port
    await rig.gateway.stop()
    with pytest.raises(Stop) as stopped:
        await first_connect(broker, d)
    assert stopped.value.code == GATEWAY_PROBLEM
    assert f"Cannot reach the gateway at 127.0.0.1:{port}" in str(stopped.value)
    said = capsys.readouterr().out
    assert said.count("trying again") == FIRST_CONNECT_TRIES - 1, said
    assert "trying again in 4 s" in said
    async with rig.rt.db.read() as s:
        tickets = await s.scalar(select(func.count()).select_from(Ticket))
    assert tickets == FIRST_CONNECT_TRIES  # the first, and a fresh one for each retry


async def test_a_correct_ticket_gets_in_behind_the_longest_login_delay(
    tmp_path: Path, sqlite_url: str, clock: FakeClock
) -> None:
    """After a failure from the same address and name the gateway waits 16 s (its
    default maximum) before answering the next ticket: vdi-connect waits for the
    answer instead of giving up after its connect timeout."""
    settings = gateway_settings(
        tmp_path, sqlite_url, gateway_auth_delay_s=16, gateway_auth_delay_max_s=16
    )
    async with gateway_rig(settings, clock) as r:
        who = await staff(r.rt, "maria")
        r.client.headers["cookie"] = who["cookie"]
        broker = Broker(r.client, "https://testserver/")
        broker.csrf = who["X-CSRF-Token"]
        d = await wait_ready(broker, await broker.request("Finanzen"), wait_s=5)
        with pytest.raises(asyncssh.PermissionDenied):
            await ssh_client(r.port, d.user, "a stale ticket")
        assert r.gateway.delays.delay("127.0.0.1", d.user) == 16
        conn = await open_ssh(d)
        conn.close()
        assert await r.audit("gateway_auth_failed")


def connect_without_broker(
    *options: str, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """vdi-connect for maria with `options` and a password on standard input,
    at `url` or an address where no broker listens: for what it refuses first."""
    return subprocess.run(
        [str(VENV_BIN / "vdi-connect"), url or f"http://127.0.0.1:{free_port()}",
         "--user", "maria", "--password-stdin", *options],
        input="secret\n123456\n", env=clean_env(desktop_locale()), capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_recovery_code_on_the_command_line_is_refused() -> None:
    """A recovery code in --code would show in ps and the shell's history: refused
    with exit code 2 before anything is sent, the password not even read."""
    proc = connect_without_broker("--code", "abcde-fghjk")
    assert proc.returncode == BAD_INPUT, proc.stderr
    assert "--code takes the six-digit code only" in proc.stderr
    assert "Logging in" not in proc.stdout


@pytest.mark.parametrize("url", ["vdi.example.org", "ftp://vdi.example.org", "https://"])
def test_a_broker_address_without_https_is_bad_input(url: str) -> None:
    """A missing https:// was "cannot reach the broker" (exit 7) in httpx's
    words, and only after the password and code had been typed."""
    proc = connect_without_broker(url=url)
    assert proc.returncode == BAD_INPUT, proc.stderr
    assert "The broker's address begins with https://" in proc.stderr
    assert f"not {url}." in proc.stderr
    assert "Logging in" not in proc.stdout


def test_a_local_port_in_use_is_said_before_the_login() -> None:
    """A taken --local-port (vdi-connect running already) was found only after
    the login and the request for a desktop: the code spent, a licence taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = connect_without_broker("--local-port", str(port))
    assert proc.returncode == BAD_INPUT, proc.stderr
    assert f"Cannot listen on 127.0.0.1:{port}: another program uses it" in proc.stderr
    assert "Logging in" not in proc.stdout


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        (None, "nothing answers at that address (Connection refused)"),
        ("de_DE.UTF-8", "unter dieser Adresse antwortet nichts (Connection refused)"),
    ],
)
def test_a_broker_nobody_answers_for_is_said_in_the_persons_language(
    lang: str | None, said: str
) -> None:
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = subprocess.run(
        [str(VENV_BIN / "vdi-connect"), base, "--user", "maria", "--password-stdin"],
        input=f"{PASSWORD}\n123456\n", env=clean_env(desktop_locale(lang)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == NO_BROKER
    assert said in done.stderr, done.stderr
