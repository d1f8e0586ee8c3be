"""The operations and security guides cover what issue #8 asks, and every
`vdi-broker` command they show exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from broker.cli import build_parser
from broker.config import load_settings, unknown_variables

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = ["operations.md", "security.md", "nginx.md", "runbooks.md"]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_operations_guide_sections() -> None:
    text = (DOCS / "operations.md").read_text()
    for topic in (
        "Install on Debian",
        "PostgreSQL",
        "pg_dump",
        "db backup",
        "Upgrades",
        "migrations",
        "Key rotation",
        "keys rotate",
        "rotate-token",
        "gateway_host_key",
        "Capacity planning",
    ):
        assert topic in text, topic


def test_security_guide_sections() -> None:
    text = (DOCS / "security.md").read_text()
    for topic in (
        "What we protect",
        "What is logged",
        "Never logged",
        "Audit retention",
        "365",
        "audit_purged",
    ):
        assert topic in text, topic


def code(text: str) -> str:
    """The fenced blocks and inline code spans of a Markdown text."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join(blocks + spans)


@pytest.mark.parametrize("guide", GUIDES)
def test_every_command_shown_exists(guide: str) -> None:
    root = build_parser()
    shown = code((DOCS / guide).read_text())
    assert guide == "nginx.md" or "vdi-broker " in shown
    for line in re.findall(r"vdi-broker ((?:[a-z][a-z-]* ?){1,3})", shown):
        words = line.split()
        parser = root
        for word in words:
            children = subcommands(parser)
            if not children:
                break  # the rest are arguments
            assert word in children, f"{guide}: 'vdi-broker {line.strip()}' is not a command"
            parser = children[word]


def test_every_setting_variable_the_docs_and_examples_name_exists() -> None:
    """The broker refuses a VDI_* variable that sets nothing; one shown in a guide,
    an example environment file or a script must be a real setting."""
    root = DOCS.parent
    places = [*DOCS.glob("*.md"), root / "README.md", *(root / "systemd").iterdir()]
    places += [p for p in (root / "scripts").iterdir() if p.is_file()]
    named = {v for p in places for v in re.findall(r"\bVDI_[A-Z0-9_]*[A-Z0-9]", p.read_text())}
    assert "VDI_DATABASE_URL" in named
    assert unknown_variables(dict.fromkeys(named, "")) == []


def test_the_broker_environment_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd/broker.env.example, as systemd's EnvironmentFile= reads it, makes
    valid settings: a value in a shape the settings refuse would stop the service."""
    example = DOCS.parent / "systemd" / "broker.env.example"
    for line in example.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
    settings = load_settings(None)
    assert settings.effective_database_url.startswith("postgresql+asyncpg://")
    assert settings.metrics_networks == ["10.20.0.0/24"]
    assert settings.totp_issuer == "Stadt Musterstadt"
