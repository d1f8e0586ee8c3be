"""vdi-agent next to node_exporter: resident memory, and CPU time per collection.

Both run as their own processes, measured the same way from /proc/PID: RSS
(VmRSS) once warmed up, and CPU time (utime + stime) over N rounds divided by N.
Both are driven at the same rhythm, one round every PERIOD_S, because an idle
gap between rounds makes the next one dearer (cold caches) for either.

- node_exporter (Debian prometheus-node-exporter, default collectors): one
  round is one scrape of /metrics, asked for as Prometheus asks (gzip).
- vdi-agent: one round is one full report cycle of `vdi-agent run` with 20
  simulated desktops: all host collectors, listing the desktops, probing every
  console (RDP handshake), building and POSTing the report to a stub broker in
  this process. The stub answers with interval_s = PERIOD_S; startup is not
  counted. The state file is written at most every 10 s (agent.state), so in
  this fast rhythm its cost is spread thinner than at a 30 s interval, where it
  is one small file write per report.

The simulated desktops are listeners inside the agent's process, so the agent's
figure also pays for the desktops' side of every probe; on a real host that
side runs in the guests. A second agent figure (informational) shows the agent
with the same 20 desktops served by another process, through a static list; a
third, its memory when it also serves its own metrics (--metrics-port).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from statistics import mean

from bench.harness import Figure, median
from broker.ports import free_port

NAME = "agent"
DESKTOPS = 20
PERIOD_S = 0.05
# What Prometheus sends when it scrapes.
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,"
    "text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
VDI_AGENT = str(Path(sys.executable).parent / "vdi-agent")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def cpu_per_round(pid: int, rounds: Callable[[], int], n: int, timeout_s: float) -> float:
    """CPU seconds of `pid` per round over the next n rounds."""
    start_rounds, start_cpu = rounds(), cpu_seconds(pid)
    wait_until(lambda: rounds() >= start_rounds + n, timeout_s, f"{n} rounds")
    return (cpu_seconds(pid) - start_cpu) / (rounds() - start_rounds)


# -- node_exporter ---------------------------------------------------------------------


def measure_node_exporter(scrapes: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds per scrape)."""
    port = free_port()
    process = subprocess.Popen(
        ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> None:
        request = urllib.request.Request(url, headers=SCRAPE_HEADERS)
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def scrape_in_rhythm(n: int) -> None:
        next_at = time.monotonic()
        for _ in range(n):
            scrape()
            next_at += PERIOD_S
            time.sleep(max(0.0, next_at - time.monotonic()))

    try:
        wait_until(lambda: _answers(url), 10, "node_exporter")
        scrape_in_rhythm(10)  # warm up: first scrapes set up collectors
        start_cpu = cpu_seconds(process.pid)
        scrape_in_rhythm(scrapes)
        cpu = (cpu_seconds(process.pid) - start_cpu) / scrapes
        return rss_mb(process.pid), cpu
    finally:
        process.terminate()
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


# -- vdi-agent -------------------------------------------------------------------------


class StubBroker:
    """Accepts every report and asks for the next one soon."""

    def __init__(self, interval_s: float) -> None:
        self.reports = 0
        body = json.dumps({"actions": [], "interval_s": interval_s}).encode()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.reports += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def measure_agent(cycles: int, hypervisor_args: list[str]) -> tuple[float, float]:
    """(RSS MB, CPU seconds per report cycle) of `vdi-agent run`."""
    broker = StubBroker(interval_s=PERIOD_S)
    with tempfile.TemporaryDirectory() as tmp:
        token = Path(tmp) / "token"
        token.write_text("bench-token\n")
        process = subprocess.Popen(
            [VDI_AGENT, "run", "--broker", broker.url, "--token-file", str(token),
             "--state-dir", str(Path(tmp) / "state"), "--log-level", "WARNING",
             *hypervisor_args],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_until(lambda: broker.reports >= 10, 30, "the agent's first reports")
            cpu = cpu_per_round(process.pid, lambda: broker.reports, cycles, cycles * 2.0)
            return rss_mb(process.pid), cpu
        finally:
            process.terminate()
            process.wait(10)
            broker.close()


def desktops_elsewhere(tmp: Path) -> tuple[subprocess.Popen[bytes], list[str]]:
    """Simulated desktops served by a separate process, listed for the static hypervisor."""
    ports_file = tmp / "ports.json"
    server = subprocess.Popen(
        [sys.executable, "-c", _DESKTOP_SERVER, str(DESKTOPS), str(ports_file)]
    )
    wait_until(ports_file.exists, 20, "the desktop server")
    ports = json.loads(ports_file.read_text())
    listing = tmp / "desktops.toml"
    listing.write_text(
        "".join(
            f'[[desktop]]\nname = "{name}"\naddress = "127.0.0.1"\nport = {port}\n\n'
            for name, port in ports.items()
        )
    )
    return server, ["--hypervisor", "static", "--static-desktops", str(listing)]


_DESKTOP_SERVER = """
import asyncio, json, sys
from pathlib import Path
from agent.hypervisors.simulated import SimulatedHypervisor

async def main():
    sim = await SimulatedHypervisor(int(sys.argv[1])).start()
    ports = {d.name: d.port for d in await sim.desktops()}
    Path(sys.argv[2] + ".tmp").write_text(json.dumps(ports))
    Path(sys.argv[2] + ".tmp").rename(sys.argv[2])
    await asyncio.Event().wait()

asyncio.run(main())
"""


def run(quick: bool) -> list[Figure]:
    """Alternating blocks (node_exporter, agent, agent with desktops elsewhere),
    so that a change in the machine's load during the run hits all three alike.
    CPU figures are totals over all blocks; RSS figures are medians."""
    blocks, rounds = (2, 40) if quick else (3, 100)
    simulated = ["--hypervisor", "simulated", "--simulated-desktops", str(DESKTOPS)]
    ne: list[tuple[float, float]] = []
    agent: list[tuple[float, float]] = []
    agent_own: list[tuple[float, float]] = []
    for _ in range(blocks):
        ne.append(measure_node_exporter(rounds))
        agent.append(measure_agent(rounds, simulated))
        with tempfile.TemporaryDirectory() as tmp:
            server, static = desktops_elsewhere(Path(tmp))
            try:
                agent_own.append(measure_agent(rounds, static))
            finally:
                server.terminate()
                server.wait(10)
    # Serving its own metrics loads prometheus-client into the agent; shown apart.
    with_metrics_rss, _ = measure_agent(rounds // 2, [*simulated, "--metrics-port", "0"])
    ne_rss, ne_cpu = median([r for r, _ in ne]), mean([c for _, c in ne])
    agent_rss, agent_cpu = median([r for r, _ in agent]), mean([c for _, c in agent])
    agent_own_cpu = mean([c for _, c in agent_own])
    note = f"{DESKTOPS} simulated desktops, probes and report POST included"
    return [
        Figure(NAME, "agent RSS", agent_rss, "MB", note=note),
        Figure(NAME, "node_exporter RSS", ne_rss, "MB"),
        Figure(NAME, "ratio RSS agent/node_exporter", agent_rss / ne_rss, "x", "<= 1.5"),
        Figure(
            NAME,
            "ratio RSS agent with --metrics-port/node_exporter",
            with_metrics_rss / ne_rss,
            "x",
            note=f"{with_metrics_rss:.1f} MB: prometheus-client loaded",
        ),
        Figure(NAME, "agent CPU per cycle", agent_cpu * 1000, "ms", note=note),
        Figure(
            NAME, "node_exporter CPU per scrape", ne_cpu * 1000, "ms", note="gzip, as Prometheus"
        ),
        Figure(NAME, "ratio CPU agent/node_exporter", agent_cpu / ne_cpu, "x", "<= 0.5"),
        Figure(
            NAME,
            "agent CPU per cycle, desktops in another process",
            agent_own_cpu * 1000,
            "ms",
            note="static list of the same 20 desktops: the agent's own share",
        ),
    ]
