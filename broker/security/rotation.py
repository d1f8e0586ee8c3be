"""Rotating the broker key: a new current key, secrets re-encrypted under it.

The old key stays in the key file: CSRF tokens, recovery codes and ticket-less
keyed hashes made under it keep verifying (SecretBox.keyed_hashes tries every
key). TOTP secrets are re-encrypted so that, once every replica has the new
key file, the old key protects nothing stored.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from broker.audit import log as audit
from broker.auth import totp
from broker.runtime import Runtime
from broker.security.crypto import SecretBox, add_key
from broker.store.tables import Enrolment, User


async def rotate_key(rt: Runtime, actor: str) -> tuple[str, int]:
    """Add a key and re-encrypt every TOTP secret; returns (key id, secrets moved)."""
    key_id = add_key(rt.settings.key_file)
    new_box = SecretBox.from_file(rt.settings.key_file)
    now = rt.clock.now()
    moved = 0
    async with rt.db.write() as s:
        for user in (await s.scalars(select(User).where(User.totp_secret.isnot(None)))).all():
            assert user.totp_secret is not None
            context = totp.storage_context(user.id)
            user.totp_secret = new_box.encrypt(new_box.decrypt(user.totp_secret, context), context)
            moved += 1
        # Enrolments in progress hold a secret too; they last minutes: start over.
        await s.execute(delete(Enrolment).where(Enrolment.used_at.is_(None)))
        await audit.record(
            s, now, "key_rotated", actor=actor, detail={"key_id": key_id, "re_encrypted": moved}
        )
    rt.box = new_box
    return key_id, moved
