"""TOTP verification and the replay rule (pure), checked against RFC 6238 and oathtool."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from broker.auth import totp
from tests.support.totp import oathtool_code

# RFC 6238 appendix B: the seed is the ASCII string, as long as the hash output
# (20, 32 and 64 bytes), and the codes have 8 digits.
SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("unix_time", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc6238_appendix_b_vectors(unix_time: int, sha1: str, sha256: str, sha512: str) -> None:
    step = totp.step_at(unix_time)
    for digest, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        secret = base64.b32encode(SEEDS[digest]).decode()
        assert totp.code_at_step(secret, step, digits=8, digest=digest) == expected


def test_new_secret_has_160_bits_and_differs() -> None:
    a, b = totp.new_secret(), totp.new_secret()
    assert len(base64.b32decode(a)) * 8 >= 160
    assert a != b


@pytest.mark.parametrize("offset_s", [0, 7, 29, 31, 59])
def test_codes_from_oathtool_are_accepted(offset_s: int) -> None:
    secret = totp.new_secret()
    issued = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    code = oathtool_code(secret, issued)
    result = totp.check(secret, code, issued.timestamp() + offset_s, last_step=None)
    assert result.verdict is totp.Verdict.ACCEPT
    assert result.step == totp.step_at(issued.timestamp())


def test_window_is_current_and_previous_step_only() -> None:
    secret = totp.new_secret()
    now = 1_800_000_015.0
    step = totp.step_at(now)
    assert totp.check(secret, totp.code_at_step(secret, step), now, None).step == step
    assert totp.check(secret, totp.code_at_step(secret, step - 1), now, None).step == step - 1
    two_old = totp.check(secret, totp.code_at_step(secret, step - 2), now, None)
    assert two_old.verdict is totp.Verdict.WRONG
    future = totp.check(secret, totp.code_at_step(secret, step + 1), now, None)
    assert future.verdict is totp.Verdict.WRONG


def test_replay_rule_each_step_once_and_only_rising() -> None:
    secret = totp.new_secret()
    now = 1_800_000_015.0
    step = totp.step_at(now)
    current = totp.code_at_step(secret, step)
    previous = totp.code_at_step(secret, step - 1)
    assert totp.check(secret, current, now, last_step=step).verdict is totp.Verdict.REPLAY
    # After the current step was used, the older code is a replay too.
    assert totp.check(secret, previous, now, last_step=step).verdict is totp.Verdict.REPLAY
    # Used the previous step: the current one is still fine.
    assert totp.check(secret, current, now, last_step=step - 1).verdict is totp.Verdict.ACCEPT


@pytest.mark.parametrize(
    "code",
    ["１２３４５６", "٠١٢٣٤٥", "12345", "1234567", "12345 ", " 123456", "123456\n", "12a456", ""],
)
def test_malformed_codes_are_refused_before_verification(code: str) -> None:
    assert not totp.is_well_formed(code)
    secret = totp.new_secret()
    assert totp.check(secret, code, 1_800_000_015.0, None).verdict is totp.Verdict.WRONG


def test_fullwidth_digits_of_a_right_code_are_refused() -> None:
    secret = totp.new_secret()
    now = 1_800_000_015.0
    right = totp.code_at_step(secret, totp.step_at(now))
    fullwidth = right.translate({ord(str(d)): chr(0xFF10 + d) for d in range(10)})
    assert totp.check(secret, right, now, None).verdict is totp.Verdict.ACCEPT
    assert totp.check(secret, fullwidth, now, None).verdict is totp.Verdict.WRONG


def test_provisioning_uri_names_issuer_and_parameters() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", "maria", "Stadt Musterhausen")
    assert uri.startswith("otpauth://totp/Stadt%20Musterhausen:maria?")
    for part in (
        "secret=JBSWY3DPEHPK3PXP",
        "issuer=Stadt%20Musterhausen",
        "algorithm=SHA1",
        "digits=6",
        "period=30",
    ):
        assert part in uri
