"""The gateway's small rules: login slowdown, idle tunnels, throttles, client commands."""

from __future__ import annotations

import datetime as dt
import locale
import logging

import pytest
from pydantic import ValidationError

from broker.config import Settings
from broker.connect import (
    BAD_INPUT,
    LOGIN_WAIT_S,
    Stop,
    ask_pool,
    backoff,
    check_code_option,
    choose_pool,
    client_command,
    desktop_language,
    manual_hint,
    picked_pool,
    retry_delay,
    second_factor,
    windows_display_locale,
)
from broker.gateway.bridge import Bridge
from broker.gateway.slowdown import (
    MAX_AUTH_DELAY_S,
    SHARED_SOURCE_GRACE,
    FailureDelays,
    delay_for,
    may_start,
)
from broker.gateway.tunnels import (
    Tunnel,
    destination,
    due,
    idle_expired,
    last_traffic,
    over_cap,
    strays,
)
from broker.logthrottle import LogThrottle
from broker.net import source_key


def test_delay_doubles_per_failure_up_to_the_cap() -> None:
    assert [delay_for(n, 1.0, 16.0) for n in range(7)] == [0, 1, 2, 4, 8, 16, 16]
    assert delay_for(10**6, 1.0, 16.0) == 16
    assert delay_for(3, 0.0, 16.0) == 0


def test_sources_slow_down_one_by_one_and_are_forgotten() -> None:
    now = [0.0]
    delays = FailureDelays(1.0, 8.0, lambda: now[0], forget_after_s=600)
    assert delays.delay("198.51.100.7", "maria") == 0
    for _ in range(3):
        delays.failed("198.51.100.7", "maria")
    assert delays.delay("198.51.100.7", "maria") == 4
    assert delays.delay("198.51.100.8", "maria") == 0  # another source is not slowed
    now[0] += 599
    assert delays.delay("198.51.100.7", "maria") == 4
    now[0] += 2
    assert delays.delay("198.51.100.7", "maria") == 0


def test_a_shared_address_slows_down_per_name_and_only_a_flood_as_a_whole() -> None:
    delays = FailureDelays(1.0, 16.0, lambda: 0.0)
    for _ in range(5):
        delays.failed("198.51.100.7", "felix")
    assert delays.delay("198.51.100.7", "felix") == 16
    assert delays.delay("198.51.100.7", "maria") == 0  # a colleague behind the same NAT
    for n in range(SHARED_SOURCE_GRACE):
        delays.failed("198.51.100.7", f"name{n}")
    # 5 + 10 failures from the address: 5 beyond the grace, whatever the name.
    assert delays.delay("198.51.100.7", "maria") == 16
    assert delays.delay("198.51.100.7", "fresh") == 16


def test_memory_stays_bounded_under_a_flood_of_sources() -> None:
    delays = FailureDelays(1.0, 8.0, lambda: 0.0, max_sources=100)
    for i in range(1000):
        delays.failed(f"203.0.113.{i % 250}", "maria")
        delays.failed(f"2001:db8:{i:x}::1", f"user{i}")
    assert len(delays) == 100


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9")
    assert source_key("2001:db8:1:2::1") != source_key("2001:db8:1:3::1")
    assert source_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert source_key(None) == "unknown"
    delays = FailureDelays(1.0, 8.0, lambda: 0.0)
    delays.failed("2001:db8:1:2::1", "maria")
    assert delays.delay("2001:db8:1:2::abcd", "maria") == 1


def test_vdi_connect_waits_longer_for_a_login_than_any_gateway_delays_it() -> None:
    assert LOGIN_WAIT_S > MAX_AUTH_DELAY_S
    with pytest.raises(ValidationError):
        Settings(gateway_auth_delay_max_s=MAX_AUTH_DELAY_S + 1)


def test_a_recovery_code_is_refused_on_the_command_line() -> None:
    check_code_option(None)
    check_code_option("123456")
    with pytest.raises(Stop) as stopped:
        check_code_option("abcde-fghjk")
    assert stopped.value.code == BAD_INPUT and "--password-stdin" in stopped.value.message


def test_logins_under_way_are_limited_per_source_and_in_all() -> None:
    def ok(pending: list[str], key: str) -> bool:
        return may_start(pending, key, per_source=2, total=4)

    assert ok([], "192.0.2.1")
    assert ok(["192.0.2.1"], "192.0.2.1")
    assert not ok(["192.0.2.1", "192.0.2.1"], "192.0.2.1")
    assert ok(["192.0.2.1", "192.0.2.1"], "192.0.2.2")  # others are not held up
    assert not ok(["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.3"], "192.0.2.4")


def test_idle_tunnels_and_throttles() -> None:
    assert last_traffic(100, 100, 5.0, 50.0) == 5.0  # nothing moved
    assert last_traffic(101, 100, 5.0, 50.0) == 50.0
    assert not idle_expired(5.0, 50.0, 0)  # 0: no idle timeout
    assert not idle_expired(5.0, 50.0, 60)
    assert idle_expired(5.0, 65.0, 60)
    assert due(None, 0.0, 30) and due(10.0, 40.0, 30) and not due(10.0, 39.0, 30)


def test_tunnels_are_capped_per_connection_then_per_session() -> None:
    caps = {"per_connection": 4, "per_session": 6}
    assert over_cap(0, 0, **caps) is None
    assert over_cap(3, 5, **caps) is None
    assert over_cap(4, 4, **caps) == "connection"
    assert over_cap(2, 6, **caps) == "session"


def _tunnel() -> Tunnel:
    return Tunnel("t", "s", "maria", None, "10.0.0.1:3389", Bridge(), dt.datetime.now(dt.UTC))


def test_tunnels_no_live_connection_holds_are_strays() -> None:
    held, lost = _tunnel(), _tunnel()
    assert strays([held, lost], [held]) == [lost]
    assert strays([held], [held, lost]) == []


def test_a_log_line_a_client_can_provoke_goes_out_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    quiet = LogThrottle(logging.getLogger("test.quiet"), every_s=10, now=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.quiet"):
        assert quiet.log(logging.INFO, "cap", "refused %s", "a")
        assert not quiet.log(logging.INFO, "cap", "refused %s", "b")
        assert not quiet.log(logging.INFO, "cap", "refused %s", "c")
        assert quiet.log(logging.INFO, "other", "another kind")
        now[0] = 10.0
        assert quiet.log(logging.INFO, "cap", "refused %s", "d")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a",
        "another kind",
        "refused d (and 2 more like it held back)",
    ]


def test_destination_brackets_ipv6() -> None:
    assert destination("10.0.0.1", 3389) == "10.0.0.1:3389"
    assert destination("2001:db8::1", 3389) == "[2001:db8::1]:3389"


def found(*names: str):
    return lambda name: f"/usr/bin/{name}" if name in names else None


def test_the_desktop_client_per_platform() -> None:
    rdp = client_command("rdp", 4000, "linux", found("xfreerdp", "wlfreerdp"))
    assert rdp is not None and rdp.argv == ["xfreerdp", "/v:127.0.0.1:4000"] and rdp.waits
    wayland = client_command("rdp", 4000, "linux", found("xfreerdp", "wlfreerdp"), wayland=True)
    assert wayland is not None and wayland.argv[0] == "wlfreerdp"
    assert client_command("rdp", 4000, "linux", found("wlfreerdp")).argv[0] == "wlfreerdp"  # type: ignore[union-attr]
    assert client_command("rdp", 4000, "linux", found()) is None
    win = client_command("rdp", 4000, "win32", found("mstsc"))
    assert win is not None and win.argv == ["mstsc", "/v:127.0.0.1:4000"]
    mac = client_command("rdp", 4000, "darwin", found())
    assert mac is not None and mac.argv == ["open", "rdp://full%20address=s:127.0.0.1:4000"]
    assert not mac.waits
    vnc = client_command("vnc", 5901, "linux", found("vncviewer"))
    assert vnc is not None and vnc.argv == ["vncviewer", "127.0.0.1::5901"]
    assert client_command("vnc", 5901, "linux", found("xfreerdp")) is None


def test_without_a_client_the_hint_names_the_port() -> None:
    assert "xfreerdp /v:127.0.0.1:4000" in manual_hint("rdp", 4000)
    assert "vncviewer 127.0.0.1::5901" in manual_hint("vnc", 5901)


def test_second_factor_is_a_code_or_a_recovery_code() -> None:
    assert second_factor(" 123456 ") == {"code": "123456"}
    assert second_factor("123 456") == {"code": "123456"}  # as the app shows it
    assert second_factor("abcde-fghjk") == {"recovery_code": "abcde-fghjk"}
    for typed in ("12345", "1234 56", "123  456", "12 34 56"):
        with pytest.raises(Stop):
            second_factor(typed)


def test_choosing_the_pool() -> None:
    two = {"pools": [{"name": "A"}, {"name": "B"}], "sessions": []}
    assert choose_pool("B", two) == "B"
    assert choose_pool(None, {"pools": [{"name": "A"}], "sessions": []}) == "A"
    assert choose_pool(None, {**two, "sessions": [{"pool": "B"}]}) == "B"
    with pytest.raises(Stop, match="--pool and a new code: A, B"):
        choose_pool(None, two)
    asked: list[list[str]] = []
    assert choose_pool(None, two, lambda pools: asked.append(pools) or "B") == "B"
    assert asked == [["A", "B"]]
    # A session to return to needs no question.
    assert choose_pool(None, {**two, "sessions": [{"pool": "A"}]}, lambda _: "B") == "A"
    with pytest.raises(Stop, match="no desktop pool"):
        choose_pool(None, {"pools": [], "sessions": []})


def test_reconnect_backoff_doubles_to_a_cap() -> None:
    assert [backoff(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_busy_brokers_retry_after_is_honoured_within_bounds() -> None:
    now = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert retry_delay(0, None) == backoff(0)
    assert retry_delay(3, "garbage") == backoff(3)
    assert retry_delay(0, "7") == 7
    assert retry_delay(0, "0") == 1  # no busy loop
    assert retry_delay(0, "99999") == 300
    assert retry_delay(0, "Sat, 01 Mar 2025 12:00:20 GMT", now) == 20


def test_asking_for_the_pool_takes_a_number_or_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    pools = ["Außendienst", "Finanzen"]
    assert picked_pool(pools, " 2 ") == "Finanzen"
    assert picked_pool(pools, "außendienst") == "Außendienst"
    assert picked_pool(pools, "3") is None
    assert picked_pool(pools, "0") is None
    assert picked_pool(pools, "²") is None  # a digit to str.isdigit, not a number
    assert picked_pool(pools, "-1") is None
    assert picked_pool(pools, "9" * 5000) is None  # past int()'s 4,300 digits
    answers = iter(["7", "finanzen"])
    assert ask_pool(pools, lambda _prompt: next(answers)) == "Finanzen"
    shown = capsys.readouterr().out
    assert "1) Außendienst" in shown and "2) Finanzen" in shown
    assert "a number from 1 to 2" in shown
    with pytest.raises(Stop, match="No pool chosen"):
        ask_pool(pools, lambda _prompt: "nope")

    def closed(_prompt: str) -> str:
        raise EOFError

    with pytest.raises(Stop, match="No pool chosen"):
        ask_pool(pools, closed)


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({"LANG": "de_DE.UTF-8"}, "de"),
        ({"LANG": "de_AT"}, "de"),
        ({"LANG": "de_DE@euro"}, "de"),
        ({"LANG": "en_GB.UTF-8"}, "en"),
        ({"LC_ALL": "en_US.UTF-8", "LANG": "de_DE.UTF-8"}, "en"),
        ({"LC_MESSAGES": "de_DE.UTF-8", "LANG": "en_US.UTF-8"}, "de"),
        ({"LC_ALL": "", "LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "fr_FR.UTF-8", "LC_MESSAGES": ""}, None),
        ({"LANG": "C.UTF-8"}, None),
        ({"LANG": "POSIX"}, None),
        ({}, None),
    ],
)
def test_refusals_are_asked_for_in_the_language_of_the_desktop(
    environ: dict[str, str], language: str | None
) -> None:
    assert desktop_language(environ) == language


@pytest.mark.parametrize(
    ("environ", "system_locale", "language"),
    [
        ({}, "de_DE", "de"),
        ({}, "de_CH", "de"),
        ({}, "en_US", "en"),
        ({}, "fr_FR", None),
        ({}, None, None),
        # A locale set in the environment (Git Bash, WSL, a Unix desktop) wins.
        ({"LANG": "en_GB.UTF-8"}, "de_DE", "en"),
        ({"LANG": "C.UTF-8"}, "de_DE", None),
    ],
)
def test_without_a_locale_the_systems_display_language_counts(
    environ: dict[str, str], system_locale: str | None, language: str | None
) -> None:
    """Windows sets no LANG: there the display language the user chose counts
    (windows_display_locale maps its language id, 0x0407 for German, to de_DE)."""
    assert desktop_language(environ, system_locale) == language


def test_windows_language_ids_map_to_locale_names() -> None:
    assert locale.windows_locale[0x0407] == "de_DE"  # what German Windows returns
    assert locale.windows_locale[0x0C07] == "de_AT"
    assert windows_display_locale() is None  # not on Windows
