"""Settings: defaults, file, command line; mistakes named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, default_state_dir, load_config


def test_defaults() -> None:
    config = load_config(None, {})
    assert config.hypervisor == "libvirt" and config.interval == 30.0
    assert config.probe_timeout == 2.0 and config.metrics_address == "127.0.0.1"
    assert config.host_name  # this machine's name


def test_command_line_overrides_file_overrides_defaults(tmp_path: Path) -> None:
    file = tmp_path / "agent.toml"
    file.write_text(
        'broker = "http://127.0.0.1:8000"\ninterval = 10\npool = "Bauamt"\n'
        'token_file = "/etc/vdi-agent/token"\n'
    )
    config = load_config(file, {"interval": 5.0, "pool": None, "command": "run"})
    assert config.broker == "http://127.0.0.1:8000"
    assert config.interval == 5.0
    assert config.pool == "Bauamt"
    assert config.token_file == Path("/etc/vdi-agent/token")


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"hypervisor": "xen"}, "hypervisor must be"),
        ({"hypervisor": "static"}, "--static-desktops"),
        ({"interval": 0}, "interval"),
        ({"interval": 7200}, "interval"),
        ({"simulated_desktops": 3, "simulated_hang": 4}, "simulated_hang"),
        ({"simulated_protocol": "tcp"}, "simulated_protocol"),
        ({"host_name": "my host"}, "--host-name"),
        ({"pool": "x" * 65}, "pool"),
        ({"pool": "Bau\namt"}, "control character"),
        ({"metrics_address": "localhost"}, "metrics_address"),
        ({"console_address": "vhost01.example"}, "console_address"),
        ({"console_address": "fe80::1%eth0"}, "console_address"),
        ({"probe_timeout": 0}, "probe_timeout"),
        ({"log_level": "LOUD"}, "log_level"),
    ],
)
def test_mistakes_are_named(overrides: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_config(None, overrides)


def test_unknown_and_mistyped_file_settings(tmp_path: Path) -> None:
    file = tmp_path / "agent.toml"
    file.write_text("intervall = 10\n")
    with pytest.raises(ConfigError, match="unknown settings intervall"):
        load_config(file, {})
    file.write_text('interval = "10"\nsimulated_desktops = 2.5\n')
    with pytest.raises(ConfigError, match="interval, simulated_desktops"):
        load_config(file, {})
    file.write_text("interval = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(file, {})


def test_state_dir_follows_systemd_then_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/vdi-agent:/var/lib/other")
    assert default_state_dir() == Path("/var/lib/vdi-agent")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", "/home/u/.state")
    assert default_state_dir() == Path("/home/u/.state/vdi-agent")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert AgentConfig().state_dir == Path.home() / ".local/state/vdi-agent"


def test_the_example_settings_file_holds_only_settings(tmp_path: Path) -> None:
    """systemd/agent.toml.example, with its commented settings switched on, is
    what an operator copies: every key must be a setting of the right type."""
    example = Path(__file__).resolve().parents[3] / "systemd" / "agent.toml.example"
    lines = example.read_text(encoding="utf-8").splitlines()
    switched_on = [re.sub(r"^# (\w+ = )", r"\1", line) for line in lines]
    file = tmp_path / "agent.toml"
    file.write_text("\n".join(switched_on) + "\n", encoding="utf-8")
    config = load_config(file, {"command": "run"})
    assert config.host_name == "vhost01"
    assert config.console_address == "10.30.0.11"
    assert config.token_file == Path("/etc/vdi-agent/token")
