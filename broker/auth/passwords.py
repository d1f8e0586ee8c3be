"""Password rules and argon2id hashing.

Hashing and verification run in a thread pool: argon2-cffi releases the GIL, so
the pool uses every core while the event loop keeps answering other requests.
"""

from __future__ import annotations

import asyncio
import os
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib.resources import files
from typing import TypeVar

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from broker.errors import InvalidInput

MIN_LENGTH = 8
# Long passphrases are welcome; the cap only stops a megabyte "password".
MAX_LENGTH = 1024

T = TypeVar("T")


@cache
def common_passwords() -> frozenset[str]:
    text = files("broker.auth").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def password_problem(password: str, username: str | None = None) -> str | None:
    """Why a new password is not acceptable, or None when it is.

    The length and the checks against the list and the user name look at the
    password without leading and trailing white space: eight spaces, or
    "password " with a space, add nothing a guesser would not try first. The
    password itself is kept as typed."""
    if len(password) > MAX_LENGTH:
        return f"The password must have at most {MAX_LENGTH} characters."
    if len(password.strip()) < MIN_LENGTH:
        return f"The password must have at least {MIN_LENGTH} characters."
    folded = unicodedata.normalize("NFKC", password).casefold().strip()
    if folded in common_passwords():
        return "This password is on the list of commonly used passwords; choose another."
    if username and folded == username.casefold():
        return "The password must not be the user name."
    return None


def check_new_password(password: str, username: str | None = None) -> None:
    problem = password_problem(password, username)
    if problem:
        raise InvalidInput(problem, code="weak_password")


class PasswordHasher:
    """argon2id with the configured cost, run off the event loop."""

    def __init__(
        self, *, memory_kib: int, time_cost: int, parallelism: int, threads: int = 0
    ) -> None:
        self._argon = Argon2Hasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._pool = ThreadPoolExecutor(
            max_workers=threads or os.cpu_count() or 1, thread_name_prefix="argon2"
        )
        # Verified when the user does not exist, so that answer takes as long as a real one.
        self._dummy = self._argon.hash(os.urandom(16).hex())

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def hash_sync(self, password: str) -> str:
        return self._argon.hash(password)

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self._argon.hash(password))

    def verify_sync(self, stored: str, password: str) -> tuple[bool, bool]:
        """(matches, needs_rehash); a malformed stored hash never matches."""
        try:
            self._argon.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        return True, self._argon.check_needs_rehash(stored)

    async def verify(self, stored: str, password: str) -> tuple[bool, bool]:
        return await self._run(lambda: self.verify_sync(stored, password))

    async def verify_dummy(self, password: str) -> None:
        await self.verify(self._dummy, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
