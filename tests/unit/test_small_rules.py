"""Lockout delays, the rate limiter, audit escaping, names and client addresses."""

from __future__ import annotations

import pytest

from broker.audit.escape import escape_detail, escape_text
from broker.auth.lockout import lock_seconds
from broker.auth.ratelimit import SlidingWindowLimiter
from broker.errors import InvalidInput
from broker.names import check_label, check_user_name, same_but_case
from broker.net import PRIVATE_NETWORKS, client_ip, in_networks, parse_networks


def test_lockout_starts_at_threshold_and_doubles_up_to_the_cap() -> None:
    delays = [lock_seconds(n, threshold=5, base_s=30, max_s=600) for n in range(1, 12)]
    assert delays == [None, None, None, None, 30, 60, 120, 240, 480, 600, 600]


def test_rate_limiter_counts_per_key_within_the_window() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(3, 60, now=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    wait = limiter.hit("a")
    assert wait is not None and 1 <= wait <= 60
    assert limiter.hit("b") is None
    now[0] += 61
    assert limiter.hit("a") is None


def test_rate_limiter_forgets_idle_keys_and_keeps_at_most_max_keys() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(2, 60, now=lambda: now[0], max_keys=100)
    for i in range(100):
        limiter.hit(f"old{i}")
    now[0] += 30
    limiter.hit("recent")
    limiter.hit("recent")
    now[0] += 31  # the old keys' hits have left the window, "recent" has not
    assert limiter.hit("new") is None
    assert len(limiter) == 2
    assert limiter.hit("recent") is not None  # still limited: nothing of it forgotten
    for i in range(500):  # a flood from ever new sources, all within the window
        limiter.hit(f"flood{i}")
    assert len(limiter) == 100


def test_escape_replaces_control_characters_visibly() -> None:
    assert escape_text("bob\nINFO forged line") == "bob\\u000aINFO forged line"
    assert escape_text("a\x1b[31mred\x00") == "a\\u001b[31mred\\u0000"
    assert escape_text("right\u202eleft") == "right\\u202eleft"
    assert escape_text("Jürgen Müller") == "Jürgen Müller"
    assert len(escape_text("x" * 1000, max_length=50)) == 50
    assert escape_detail({"k\n": ["v\r"]}) == {"k\\u000a": ["v\\u000d"]}
    # Names that look like another: zero-width and direction marks, a no-break space.
    assert escape_text("maria\u200b") == "maria\\u200b"
    assert escape_text("\u200emaria\u061c") == "\\u200emaria\\u061c"
    assert escape_text("anna\u00a0b") == "anna\\u00a0b"
    assert escape_text("x\U000e0001") == "x\\U000e0001"
    # A backslash typed as text is doubled: the escaped NUL and the text "\u0000"
    # stay apart.
    assert escape_text("maria\\u0000") == "maria\\\\u0000"
    assert escape_text("maria\u0000") == "maria\\u0000"


@pytest.mark.parametrize("bad", ["", "-maria", "maria schmidt", "märia", "a" * 65, "x;rm"])
def test_bad_user_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        check_user_name(bad)


def test_user_names_are_folded_to_lower_case() -> None:
    assert check_user_name(" Maria.Schmidt ") == "maria.schmidt"


def test_labels_allow_german_department_names() -> None:
    assert check_label("Bürgerbüro", "department") == "Bürgerbüro"
    with pytest.raises(InvalidInput):
        check_label("Finan\nzen", "department")
    with pytest.raises(InvalidInput):
        check_label('x"} 1', "department")


def test_names_that_differ_in_case_only_are_the_same_name() -> None:
    taken = ["Finanzen", "Außendienst", "vhost01"]
    assert same_but_case("finanzen", taken) == "Finanzen"
    assert same_but_case("AUSSENDIENST", taken) == "Außendienst"
    assert same_but_case("VHOST01", taken) == "vhost01"
    assert same_but_case("Finanzamt", taken) is None


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    trusted = parse_networks(["10.0.0.0/8"])
    assert client_ip("198.51.100.7", "203.0.113.9", trusted) == "198.51.100.7"
    assert client_ip("10.1.2.3", "203.0.113.9", trusted) == "203.0.113.9"
    # A client cannot hide behind a forged left-most hop.
    assert client_ip("10.1.2.3", "1.2.3.4, 203.0.113.9, 10.9.9.9", trusted) == "203.0.113.9"
    assert client_ip("10.1.2.3", "garbage", trusted) == "10.1.2.3"


def test_in_networks_reads_ipv4_written_as_ipv6_and_refuses_what_is_no_address() -> None:
    private = parse_networks(list(PRIVATE_NETWORKS))
    assert in_networks("10.1.2.3", private)
    assert in_networks("::ffff:192.168.0.9", private)
    assert in_networks("fd00::1", private)
    assert not in_networks("::ffff:203.0.113.9", private)
    assert not in_networks("203.0.113.9", private)
    assert not in_networks("testclient", private)
    assert not in_networks(None, private)
