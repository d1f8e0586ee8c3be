"""Real Prometheus and Alertmanager processes for tests, and an alert webhook.

Why here: the Alertmanager route test and the end-to-end monitoring test both
start the Debian packages' binaries on loopback (own port, own storage, no
clustering) and must stop them again whatever happens; the end-to-end test also
needs Prometheus's HTTP API and a receiver for what Alertmanager posts. One
place keeps the start flags (see TESTING.md) and the readiness wait alike.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx

from broker.ports import free_port
from tests.support.processes import stop, wait_http

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"

Json = dict[str, Any]


@dataclass(frozen=True)
class Tool:
    """A running Prometheus or Alertmanager: its base URL and where it logs."""

    url: str
    log: Path


@contextmanager
def _running(name: str, binary: str, workdir: Path, *flags: str) -> Iterator[Tool]:
    """Start `binary` on a free loopback port, wait for /-/ready, and stop it on
    leaving, even on failure; its output goes to `workdir`/`name`.log."""
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}", *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            # /-/ready answers 503 until the tool has loaded its configuration.
            wait_http(f"{url}/-/ready", proc=process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{name} did not start:\n{log.read_text()}") from exc
        yield Tool(url, log)
    finally:
        stop(process)


def running_alertmanager(config: Path, workdir: Path) -> AbstractContextManager[Tool]:
    """Alertmanager with `config`, storage under `workdir`, clustering off."""
    return _running(
        "alertmanager",
        ALERTMANAGER,
        workdir,
        f"--config.file={config}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        "--cluster.listen-address=",
    )


def running_prometheus(config: Path, workdir: Path) -> AbstractContextManager[Tool]:
    """Prometheus with `config` (rule files relative to it), TSDB under `workdir`.

    Firing alerts are resent every second instead of every minute: an alert that
    fires before Prometheus has found its Alertmanager is otherwise dropped
    until the next resend, far beyond a test's deadline.
    """
    return _running(
        "prometheus",
        PROMETHEUS,
        workdir,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        "--rules.alert.resend-delay=1s",
    )


class PrometheusAPI:
    """The few calls of Prometheus's HTTP API the tests need, errors raised."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params: str | float) -> list[Json]:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {response.status_code} {body}")
        return cast(list[Json], body["data"]["result"])

    def query(self, expr: str) -> list[Json]:
        """Instant vector now: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        return self._get("/api/v1/query", query=expr)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Json]:
        """Range matrix: [{"metric": {...}, "values": [[t, "v"], ...]}, ...]."""
        return self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)

    def values(self, expr: str, label: str) -> dict[str, float]:
        """The instant value of every series of `expr`, by its `label`."""
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}


def finite_samples(result: list[Json]) -> list[float]:
    """Every sample value of an instant or range result that is a real number.

    NaN (a ratio of zero rates, a quantile of an empty histogram) is what Grafana
    draws as a gap, so it does not count as data.
    """
    points = [r["value"] for r in result if "value" in r]
    points += [p for r in result for p in r.get("values", [])]
    return [v for v in (float(p[1]) for p in points) if math.isfinite(v)]


class WebhookReceiver:
    """An HTTP server on loopback recording every JSON body posted to it.

    Stands in for the pager, ticket and chat services of the Alertmanager
    configuration: the URL path tells which receiver posted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: list[tuple[str, Json]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver._posts.append((self.path, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None  # keep the test output for failures

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def posts(self) -> list[tuple[str, Json]]:
        """(path, Alertmanager webhook payload) of every post so far."""
        with self._lock:
            return list(self._posts)

    def alerts(self) -> list[tuple[str, Json, Json]]:
        """(path, payload, one alert of the payload) for every alert posted so far."""
        return [(path, body, alert) for path, body in self.posts() for alert in body["alerts"]]
