"""Single-use recovery codes: ten per user, shown once, stored as keyed hashes."""

from __future__ import annotations

import datetime as dt
import re
import secrets

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from broker.security.crypto import SecretBox
from broker.store.db import Executor
from broker.store.tables import RecoveryCode

COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper
_GROUP = 5
_CLASS = "".join(sorted(set(_ALPHABET + _ALPHABET.upper())))
# Typed with or without the dash, in either case. No flags: pydantic reuses the pattern.
CODE_RE = re.compile(rf"[{_CLASS}]{{{_GROUP}}}-?[{_CLASS}]{{{_GROUP}}}")


def new_code() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(2 * _GROUP))
    return f"{chars[:_GROUP]}-{chars[_GROUP:]}"


def normalise(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


async def replace_codes(session: AsyncSession, box: SecretBox, user_id: int) -> list[str]:
    """Drop the user's old codes and store ten new ones; return them to show once."""
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [new_code() for _ in range(COUNT)]
    session.add_all(
        RecoveryCode(user_id=user_id, code_hash=box.keyed_hash(normalise(code))) for code in codes
    )
    return codes


async def use_code(
    session: Executor, box: SecretBox, user_id: int, code: str, now: dt.datetime
) -> bool:
    """Mark a code used; True only for the one request that used it first."""
    result = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash.in_(box.keyed_hashes(normalise(code))),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
