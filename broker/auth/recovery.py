"""Single-use recovery codes: ten per user, shown once, stored as keyed hashes."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from broker.auth.code_formats import RECOVERY_ALPHABET, RECOVERY_GROUP
from broker.security.crypto import SecretBox
from broker.store.db import Executor
from broker.store.tables import RecoveryCode

COUNT = 10


def new_code() -> str:
    chars = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(2 * RECOVERY_GROUP))
    return f"{chars[:RECOVERY_GROUP]}-{chars[RECOVERY_GROUP:]}"


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
