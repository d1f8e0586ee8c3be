"""Free ports for servers started a moment later (broker.ports)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from broker import ports


def test_free_ports_lie_below_the_ephemeral_range_and_are_not_repeated() -> None:
    start = ports.ephemeral_start()
    handed = [ports.free_port() for _ in range(50)]
    assert all(ports.LOWEST <= port < start for port in handed)
    assert len(set(handed)) == len(handed)
    for port in handed:
        with socket.create_server(("127.0.0.1", port)):
            pass  # each can be bound


def test_a_port_something_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        taken = busy.getsockname()[1]
        later = ports.free_port()  # a free port to be offered second

        picks = iter([taken, later])

        class Scripted(random.Random):
            def randrange(self, *_: object) -> int:  # type: ignore[override]
                return next(picks)

        monkeypatch.setattr(ports, "_random", Scripted())
        monkeypatch.setattr(ports, "_handed_out", set())
        monkeypatch.setattr(ports, "ephemeral_start", lambda: 65536)
        assert ports.free_port() == later


def test_the_ephemeral_range_is_read_from_the_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("40000\t60999\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", setting)
    assert ports.ephemeral_start() == 40000
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports.ephemeral_start() == ports.EPHEMERAL_START


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free() -> None:
    """A demo restarted on its port moved to another one: the connections of the
    stopped server, in TIME_WAIT, made the port look taken, though a server
    (which sets SO_REUSEADDR) can listen on it again at once."""
    port = ports.free_port()
    with socket.create_server(("127.0.0.1", port)) as listener:
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: it keeps the TIME_WAIT
        client.close()
    assert ports.port_is_free("127.0.0.1", port)
    with socket.create_server(("127.0.0.1", port)) as again:  # as the demo then does
        assert again.getsockname()[1] == port
        assert not ports.port_is_free("127.0.0.1", port)  # listening: taken
