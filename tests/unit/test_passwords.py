"""Password rules and argon2id hashing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type, extract_parameters

from broker.auth.passwords import MIN_LENGTH, PasswordHasher, password_problem
from broker.config import ARGON2_MIN_MEMORY_KIB, Settings


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(memory_kib=19456, time_cost=2, parallelism=1, threads=2)


def test_minimum_length() -> None:
    assert password_problem("x7#Kq2!") is not None
    assert len("x7#Kq2!") == MIN_LENGTH - 1
    assert password_problem("x7#Kq2!v") is None


@pytest.mark.parametrize("common", ["password", "Password1", "12345678", "PASSWORT", "qwertz123"])
def test_common_passwords_are_refused_case_insensitively(common: str) -> None:
    assert "commonly used" in (password_problem(common) or "")


def test_password_equal_to_user_name_is_refused() -> None:
    assert password_problem("Maria.Schmidt", "maria.schmidt") is not None
    assert password_problem(" maria.schmidt\t", "maria.schmidt") is not None


@pytest.mark.parametrize("padded", [" " * MIN_LENGTH, "\t" * 12, "password ", "  12345678  "])
def test_white_space_around_a_password_does_not_get_it_past_the_rules(padded: str) -> None:
    """Spaces around a password count for neither its length nor the list."""
    assert password_problem(padded) is not None


def test_white_space_inside_a_passphrase_is_kept() -> None:
    assert password_problem("correct horse battery") is None


async def test_hash_is_argon2id_with_at_least_owasp_parameters(hasher: PasswordHasher) -> None:
    params = extract_parameters(await hasher.hash("a long passphrase"))
    assert params.type is Type.ID
    assert params.memory_cost >= 19456
    assert params.time_cost >= 2
    assert params.parallelism >= 1


async def test_long_passwords_are_not_truncated(hasher: PasswordHasher) -> None:
    long = "Ein sehr langes Passwort, das niemand errät: " * 3
    assert len(long) > 64
    stored = await hasher.hash(long)
    assert await hasher.verify(stored, long) == (True, False)
    assert (await hasher.verify(stored, long[:-1]))[0] is False
    assert (await hasher.verify(stored, long[:72]))[0] is False


async def test_rehash_is_requested_when_parameters_rise(hasher: PasswordHasher) -> None:
    weaker = Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
    stronger = PasswordHasher(memory_kib=2 * 19456, time_cost=3, parallelism=1, threads=1)
    stored = weaker.hash("passphrase for rehash")
    assert await stronger.verify(stored, "passphrase for rehash") == (True, True)
    assert await hasher.verify(stored, "passphrase for rehash") == (True, False)
    stronger.close()


async def test_malformed_stored_hash_never_matches(hasher: PasswordHasher) -> None:
    assert await hasher.verify("not-a-hash", "anything at all") == (False, False)


def test_settings_refuse_weaker_argon2_than_owasp() -> None:
    with pytest.raises(ValueError, match="argon2_memory_kib"):
        Settings(argon2_memory_kib=ARGON2_MIN_MEMORY_KIB - 1)
    with pytest.raises(ValueError, match="argon2_time_cost"):
        Settings(argon2_time_cost=1)
