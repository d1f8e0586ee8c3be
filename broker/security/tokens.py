"""Random tokens and their stored form.

Every bearer secret the broker hands out (web session ids, CSRF tokens, agent
tokens, tunnel tickets, enrolment tokens) has at least 256 bits from `secrets`,
so a plain SHA-256 is a safe stored form: nobody can brute-force the preimage,
and a database dump does not let anyone log in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def new_token(nbytes: int = TOKEN_BYTES) -> str:
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two strings."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
