"""The real `vdi-agent` command, as a subprocess."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from agent_fake_broker import TOKEN, FakeBroker, eventually
from prometheus_client.parser import text_string_to_metric_families

from agent.protocol import Report
from tests.support.certs import ca_and_server
from tests.support.processes import REPO, clean_env

VDI_AGENT = str(Path(sys.executable).parent / "vdi-agent")


def test_once_prints_a_protocol_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [VDI_AGENT, "once", "--hypervisor", "simulated", "--simulated-desktops", "4",
         "--simulated-hang", "1", "--probe-timeout", "0.5", "--pool", "Verwaltung",
         "--host-name", "vhost01", "--capacity", "40", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = Report.model_validate(json.loads(done.stdout))
    assert report.host == "vhost01" and report.seq == 1
    assert len(report.desktops) == 4 and {d.pool for d in report.desktops} == {"Verwaltung"}
    assert report.metrics.cpu_utilization_ratio is not None  # collected twice
    assert report.metrics.probes.probes_total == 4 and report.metrics.probes.timeouts_total == 1
    assert report.metrics.session_capacity == 40
    assert {c.name for c in report.metrics.collectors} == {
        "cpu", "load", "memory", "disk", "network", "pressure", "hypervisor", "probes"
    }  # fmt: skip
    assert not list(tmp_path.iterdir())  # `once` leaves the state alone


def test_python_dash_m_works_too(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "once", "--hypervisor", "simulated",
         "--simulated-desktops", "1", "--simulated-protocol", "vnc", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    probe = Report.model_validate_json(done.stdout).desktops[0].probe
    assert probe is not None and probe.ok


def test_usage_errors(tmp_path: Path) -> None:
    no_broker = subprocess.run(
        [VDI_AGENT, "run", "--hypervisor", "simulated"], capture_output=True, text=True, check=False
    )
    assert no_broker.returncode == 2 and "--broker URL and --token-file" in no_broker.stderr
    no_token = subprocess.run(
        [VDI_AGENT, "run", "--broker", "http://127.0.0.1:9", "--token-file",
         str(tmp_path / "absent"), "--hypervisor", "simulated", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert no_token.returncode == 1 and "cannot read the token file" in no_token.stderr
    bad_url = subprocess.run(
        [VDI_AGENT, "run", "--broker", "broker:8000", "--token-file", "t"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad_url.returncode == 2 and "not an http(s) URL" in bad_url.stderr


def test_a_broker_url_with_credentials_or_a_query_is_refused_without_echoing_them(
    tmp_path: Path,
) -> None:
    """The agent sends no credentials from the URL (its token is its credential) and
    logs the URL on every failure: a password put there would land in the journal.
    A query would be glued in front of the report path. Both stop the start."""
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    for url, said in (
        ("http://vdi:Geheim123@127.0.0.1:9", "user name or password"),
        ("https://127.0.0.1:9/?tenant=1", "query or fragment"),
        ("https://127.0.0.1:9/#x", "query or fragment"),
    ):
        done = subprocess.run(
            [VDI_AGENT, "run", "--broker", url, "--token-file", str(token),
             "--hypervisor", "simulated", "--state-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 2, (url, done.stderr)
        assert said in done.stderr and "Geheim123" not in done.stderr
        assert "Traceback" not in done.stderr


def test_files_that_are_not_utf8_are_named_without_a_traceback(tmp_path: Path) -> None:
    """A desktop list or settings file saved in Latin-1 (an umlaut in a pool name,
    written on a Windows desktop) is a mistake to name, not a crash to dump."""
    latin1 = tmp_path / "desktops.toml"
    latin1.write_bytes('[[desktop]]\nname = "pc-01"\npool = "Bürgerbüro"\n'.encode("latin-1"))
    static = subprocess.run(
        [VDI_AGENT, "once", "--hypervisor", "static", "--static-desktops", str(latin1),
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert static.returncode == 1, static.stderr
    assert f"{latin1} is not UTF-8 text" in static.stderr
    assert "Traceback" not in static.stderr
    settings = tmp_path / "agent.toml"
    settings.write_bytes('pool = "Bürgerbüro"\n'.encode("latin-1"))
    config = subprocess.run(
        [VDI_AGENT, "once", "--config", str(settings)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert config.returncode == 2, config.stderr
    assert f"{settings} is not UTF-8 text" in config.stderr
    assert "Traceback" not in config.stderr


def test_files_saved_with_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    """Windows Notepad puts a UTF-8 byte order mark in front; TOML then failed
    with "Invalid statement (at line 1, column 1)", which shows nothing wrong."""
    bom = b"\xef\xbb\xbf"
    desktops = tmp_path / "desktops.toml"
    desktops.write_bytes(bom + b'[[desktop]]\r\nname = "pc-01"\r\naddress = "127.0.0.1"\r\n')
    settings = tmp_path / "agent.toml"
    settings.write_bytes(
        bom + f'pool = "B\u00fcrgerb\u00fcro"\r\nstatic_desktops = "{desktops}"\r\n'.encode()
    )
    done = subprocess.run(
        [VDI_AGENT, "once", "--config", str(settings), "--hypervisor", "static",
         "--probe-timeout", "0.5", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = Report.model_validate_json(done.stdout)
    assert [(d.name, d.pool) for d in report.desktops] == [("pc-01", "Bürgerbüro")]


async def test_run_reports_serves_metrics_and_stops_cleanly(
    broker: FakeBroker, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    process = await asyncio.create_subprocess_exec(
        VDI_AGENT, "run", "--broker", broker.url, "--token-file", str(token_file),
        "--hypervisor", "simulated", "--simulated-desktops", "3", "--interval", "0.2",
        "--metrics-port", "0", "--state-dir", str(tmp_path / "state"),
        "--host-name", "vhost02", "--log-level", "debug",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    stderr = ""
    try:
        while "serving metrics at " not in stderr:
            stderr += (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        metrics_url = stderr.split("serving metrics at ")[1].split()[0]
        await eventually(lambda: len(broker.reports) >= 2, timeout_s=20)
        async with httpx.AsyncClient() as client:
            text = (await client.get(metrics_url)).text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert samples[("vdi_agent_reports_sent_total", ())] >= 1
        assert samples[("vdi_agent_reports_failed_total", ())] == 0
        assert samples[("vdi_agent_report_backlog", ())] == 0
        assert samples[("vdi_agent_last_report_success_timestamp_seconds", ())] > 1e9
        assert samples[("vdi_agent_collector_success", (("collector", "probes"),))] == 1
        assert ("vdi_agent_collector_duration_seconds", (("collector", "cpu"),)) in samples
        assert samples[("vdi_agent_desktops", (("power_state", "running"),))] == 3
        assert any(k[0] == "vdi_agent_build_info" for k in samples)
    finally:
        process.send_signal(signal.SIGTERM)
        stderr += (await asyncio.wait_for(process.stderr.read(), 10)).decode()
        code = await asyncio.wait_for(process.wait(), 10)
    assert code == 0, stderr
    assert metrics_url.startswith("http://127.0.0.1:")
    assert "vdi-agent stopped" in stderr and TOKEN not in stderr
    saved = json.loads((tmp_path / "state" / "state.json").read_text())
    assert saved["seq"] == broker.reports[-1].seq  # clean stop: no reserved numbers kept


def test_a_metrics_port_in_use_is_named(tmp_path: Path) -> None:
    """Another exporter (or a second agent) on the port: the admin is told which
    address and setting, not just "[Errno 98] Address already in use"."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [VDI_AGENT, "run", "--broker", "http://127.0.0.1:9", "--token-file", str(token_file),
             "--hypervisor", "simulated", "--simulated-desktops", "0",
             "--metrics-port", str(port), "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot serve metrics at 127.0.0.1:{port} (--metrics-port" in done.stderr
    assert "Address already in use" in done.stderr and "Traceback" not in done.stderr


async def test_a_stop_does_not_wait_for_a_broker_that_never_answers(tmp_path: Path) -> None:
    """A broker (or proxy) that accepts the connection and then hangs: SIGTERM or
    Ctrl-C stops the agent at once, not after the 10 s report timeout with a
    'retrying in ...' line, and the state is saved."""
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    for signum in (signal.SIGTERM, signal.SIGINT):
        accepted.clear()
        process = await asyncio.create_subprocess_exec(
            VDI_AGENT, "run", "--broker", f"http://127.0.0.1:{port}",
            "--token-file", str(token_file), "--hypervisor", "simulated",
            "--simulated-desktops", "1", "--state-dir", str(tmp_path / "state"),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stderr is not None
        try:
            await asyncio.wait_for(accepted.wait(), 20)
            await asyncio.sleep(0.3)  # the report is on its way
        finally:
            process.send_signal(signum)
            started = asyncio.get_running_loop().time()
            stderr = (await asyncio.wait_for(process.stderr.read(), 20)).decode()
            code = await asyncio.wait_for(process.wait(), 20)
        took = asyncio.get_running_loop().time() - started
        assert code == 0, stderr
        assert took < 5, (signum, took, stderr)
        assert "retrying" not in stderr and "vdi-agent stopped" in stderr, stderr
    assert json.loads((tmp_path / "state" / "state.json").read_text())["seq"] == 2
    for writer in held:
        writer.close()
    server.close()


async def test_the_agent_env_example_offers_what_the_agent_reads(tmp_path: Path) -> None:
    """systemd/agent.env.example shows only variables that change what the agent
    does (it once offered NO_PROXY, which the agent, using no proxy, never read):
    its SSL_CERT_FILE, pointed at a CA of the test's own, makes the agent trust a
    broker certificate from that CA, which it refuses without it."""
    example = (REPO / "systemd" / "agent.env.example").read_text()
    offered = dict(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=(\S+)$", example, re.MULTILINE))
    assert set(offered) == {"SSL_CERT_FILE"}, offered
    ca, cert, key = ca_and_server(tmp_path)
    broker = FakeBroker(tls=(cert, key))
    await broker.start()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    base_env = {k: v for k, v in clean_env().items() if not k.startswith("SSL_CERT_")}

    async def agent_until(env: dict[str, str], condition: Callable[[str], bool]) -> str:
        process = await asyncio.create_subprocess_exec(
            VDI_AGENT, "run", "--broker", broker.url, "--token-file", str(token_file),
            "--hypervisor", "simulated", "--simulated-desktops", "1", "--interval", "0.2",
            "--state-dir", str(tmp_path / "state"), "--host-name", "vhost01",
            env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stderr is not None
        stderr = ""
        try:
            while not condition(stderr):
                stderr += (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        finally:
            process.send_signal(signal.SIGTERM)
            stderr += (await asyncio.wait_for(process.stderr.read(), 10)).decode()
            await asyncio.wait_for(process.wait(), 10)
        return stderr

    try:
        refused = await agent_until(base_env, lambda text: "TLS failed" in text)
        assert "CERTIFICATE_VERIFY_FAILED" in refused and not broker.reports
        installed = {k: v.replace("/etc/vdi-agent/ca.pem", str(ca)) for k, v in offered.items()}
        assert installed["SSL_CERT_FILE"] == str(ca)  # the example's place for the CA
        trusted = await agent_until(
            {**base_env, **installed}, lambda text: "delivered" in text or "TLS failed" in text
        )
        assert "TLS failed" not in trusted and broker.reports, trusted
    finally:
        await broker.stop()
