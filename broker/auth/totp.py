"""TOTP (RFC 6238) verification and the replay rule, as pure functions.

Parameters: SHA1, 6 digits, 30-second steps, as every authenticator app does.

Window: a code is accepted for its own step and for the step after it, i.e. we
accept the current and the previous step. A code therefore works for 30 to 60
seconds after the app first shows it, which covers a user typing slowly and a
phone clock up to 30 s behind; a clock that is ahead is not accepted (it would
widen the window for an attacker without helping honest users much).

Replay: a code is only accepted for a step later than the last step accepted for
that user, so each (user, step) is used at most once and the stored step only
rises. The store enforces the same rule with a conditional UPDATE so parallel
requests cannot both win (broker.auth.login).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote, urlencode

import pyotp

from broker.auth.code_formats import TOTP_CODE_RE

STEP_SECONDS = 30
DIGITS = 6
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommended length for SHA1
ACCEPTED_PAST_STEPS = 1


class Verdict(Enum):
    ACCEPT = "accept"
    REPLAY = "replay"
    WRONG = "wrong"


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    step: int | None = None


def new_secret() -> str:
    """A fresh base32 secret of 160 bits from the OS's CSPRNG."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def step_at(unix_time: float) -> int:
    return int(unix_time // STEP_SECONDS)


def code_at_step(secret: str, step: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """The code for a time step; other digits and digests only for RFC test vectors."""
    totp = pyotp.TOTP(secret, digits=digits, interval=STEP_SECONDS, digest=getattr(hashlib, digest))
    return totp.at(step * STEP_SECONDS)


def is_well_formed(code: str) -> bool:
    return TOTP_CODE_RE.fullmatch(code) is not None


def check(secret: str, code: str, unix_time: float, last_step: int | None) -> Check:
    """Decide on a code: accepted (for which step), a replay, or wrong."""
    if not is_well_formed(code):
        return Check(Verdict.WRONG)
    now_step = step_at(unix_time)
    for step in range(now_step, now_step - ACCEPTED_PAST_STEPS - 1, -1):
        if hmac.compare_digest(code_at_step(secret, step), code):
            if last_step is not None and step <= last_step:
                return Check(Verdict.REPLAY, step)
            return Check(Verdict.ACCEPT, step)
    return Check(Verdict.WRONG)


def storage_context(user_id: int) -> str:
    """Associated data that binds an encrypted secret to its user row."""
    return f"totp:{user_id}"


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    label = quote(f"{issuer}:{account}", safe=":@")
    params = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_SECONDS,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{params}"
