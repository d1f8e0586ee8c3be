"""vdi-connect's words: every text it says has its German, with the same
placeholders, and a German desktop gets them."""

from __future__ import annotations

import ast
import errno
import socket
import string
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import httpx
import pytest

from broker import connect
from broker.connect import (
    channel_problem,
    connection_problem,
    ended_text,
    login_problem,
    manual_hint,
    tr,
    unknown_pool_text,
    use_language,
)
from broker.connect_texts import GERMAN
from broker.gateway.reasons import CANNOT_CHECK

SOURCE = Path(connect.__file__)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def said_texts() -> list[str]:
    """The first argument of every tr(...) call in broker/connect.py."""
    texts = []
    for node in ast.walk(ast.parse(SOURCE.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "tr":
            first = node.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                f"line {node.lineno}: tr() takes a written text, so this check can see it"
            )
            texts.append(first.value)
    return texts


@pytest.fixture
def german() -> Iterator[None]:
    use_language("de")
    try:
        yield
    finally:
        use_language(None)


def test_every_text_has_its_german_with_the_same_placeholders() -> None:
    texts = said_texts()
    assert len(texts) > 40, "the scan found too few texts"
    missing = sorted(t for t in texts if t not in GERMAN)
    assert not missing
    for text in texts:
        assert placeholders(GERMAN[text]) == placeholders(text), text


def test_no_german_text_is_left_over() -> None:
    assert sorted(set(GERMAN) - set(said_texts())) == []


def test_english_unless_the_desktop_is_german() -> None:
    assert tr("Disconnected.") == "Disconnected."
    use_language("en")
    try:
        assert tr("Press Ctrl-C to disconnect.") == "Press Ctrl-C to disconnect."
    finally:
        use_language(None)


def end_reasons() -> set[str]:
    """The reasons the broker ends sessions with: the written ones it passes to
    broker.sessions.service.end_where, and those of logging off."""
    reasons = {"user_logoff", "admin_end"}  # end_session's, chosen at run time
    for path in Path(connect.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "end_where"
                and len(node.args) > 3
                and isinstance(node.args[3], ast.Constant)
            ):
                reasons.add(node.args[3].value)
    return reasons


def test_every_end_reason_is_said_in_words() -> None:
    """A session ended because its host failed said "(host_lost)"."""
    reasons = end_reasons()
    assert {"disconnect_timeout", "host_lost", "start_timeout"} <= reasons, "the scan missed some"
    for reason in reasons:
        assert reason not in ended_text({"end_reason": reason}), reason


@pytest.mark.usefixtures("german")
def test_a_german_desktop_gets_german_words_with_their_values() -> None:
    assert tr("Password for {user}: ", user="maria") == "Passwort für maria: "
    assert login_problem(httpx.Response(401), "https://vdi/").message == (
        "Benutzername, Passwort oder Code ist falsch."
    )
    wait = login_problem(httpx.Response(429, headers={"Retry-After": "30"}), "https://vdi/")
    assert wait.message == "Zu viele Anmeldeversuche; versuchen Sie es in 30 Sekunden erneut."
    assert "127.0.0.1::5901" in manual_hint("vnc", 5901)
    assert manual_hint("vnc", 5901).startswith("Kein VNC-Viewer gefunden.")
    assert ended_text({"end_reason": "idle_timeout"}) == (
        "Ihre Desktop-Sitzung ist beendet (sie war zu lange unbenutzt)."
    )
    # An end reason this version does not know is shown as the broker named it.
    assert ended_text({"end_reason": "moon_phase"}) == (
        "Ihre Desktop-Sitzung ist beendet (moon_phase)."
    )
    # A local connection that waited in vain for the tunnel to come back said
    # "Could not open a connection to the desktop: " and nothing more.
    assert channel_problem(TimeoutError()) == "die Verbindung zum Gateway steht noch nicht wieder"
    assert unknown_pool_text("Bauhoff", ["Bauhof", "Finanzen"]) == (
        "Es gibt keinen Pool Bauhoff. Pools, die Sie nutzen dürfen: Bauhof, Finanzen"
    )


@pytest.mark.usefixtures("german")
def test_connection_problems_are_said_in_the_persons_language() -> None:
    paused = asyncssh.ServiceNotAvailable(CANNOT_CHECK)
    assert connection_problem(paused) == "der Broker kann Tickets gerade nicht prüfen"
    # The same code from something else in the way keeps its own reason.
    busy = asyncssh.ServiceNotAvailable("Too many unauthenticated connections")
    assert connection_problem(busy) == "Too many unauthenticated connections"
    # The operating system's common reasons in German, its own words after them.
    assert connection_problem(ConnectionRefusedError(111, "Connection refused")) == (
        "unter dieser Adresse antwortet nichts (Connection refused)"
    )
    assert connection_problem(OSError(errno.EHOSTUNREACH, "No route to host")) == (
        "das Netzwerk erreicht diese Adresse nicht (No route to host)"
    )
    assert connection_problem(TimeoutError()) == "der Server antwortet nicht"
    # Others as the system put them.
    assert connection_problem(PermissionError(13, "Permission denied")) == (
        "[Errno 13] Permission denied"
    )
    # httpx names these by class only, in English; and wraps the system's reason.
    assert connection_problem(httpx.ReadTimeout("")) == (
        "der Broker hat nicht rechtzeitig geantwortet"
    )
    wrapped = httpx.ConnectError("[Errno -2] Name or service not known")
    wrapped.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert connection_problem(wrapped) == (
        "der Name des Servers ist nicht bekannt (Name or service not known)"
    )
    assert connection_problem(httpx.ConnectError("[Errno 111] Connection refused")) == (
        "der Broker ist nicht erreichbar"
    )
    # A broker that went away in mid-request (restarting) said "ReadError".
    assert connection_problem(httpx.ReadError("")) == "der Broker ist nicht erreichbar"
    assert (
        connection_problem(
            httpx.RemoteProtocolError("Server disconnected without sending a response.")
        )
        == "der Broker ist nicht erreichbar"
    )


def test_an_unknown_pool_is_answered_with_the_pools_one_may_use() -> None:
    assert unknown_pool_text("Bauhoff", ["Bauhof", "Finanzen"]) == (
        "There is no pool Bauhoff. Pools you may use: Bauhof, Finanzen"
    )
    assert unknown_pool_text("Bauhoff", []) == "There is no pool Bauhoff."


def test_values_with_braces_are_shown_as_they_are() -> None:
    assert tr("Asking for a desktop in pool {pool} ...", pool="{x}") == (
        "Asking for a desktop in pool {x} ..."
    )


@pytest.mark.parametrize(
    "option", [["--wait", "٣٠٠"], ["--wait", "nan"], ["--wait", "0"], ["--local-port", "65536"]]
)
def test_number_options_take_ascii_digits_in_range(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    parser = connect.build_parser()
    args = parser.parse_args(["https://vdi", "--user", "maria", "--wait", "60"])
    assert (args.wait, args.local_port) == (60, 0)
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["https://vdi", "--user", "maria", *option])
    assert refused.value.code == 2
    assert "is not a whole number" in capsys.readouterr().err
