"""The shapes of second-factor codes, as a person types them.

Checked before anything is looked up: by the API and the portal, and by
vdi-connect on a staff member's own computer. So this module imports nothing
of the broker's storage, which would cost vdi-connect half a second of start-up.
"""

from __future__ import annotations

import re

# pyotp would accept other Unicode digits; we only take ASCII 0-9.
TOTP_CODE_RE = re.compile(r"[0-9]{6}")
# Authenticator apps show a code in two groups ("123 456"), and people type or
# paste it so. The portal and vdi-connect take it; the API wants the six digits.
_GROUPED_TOTP_RE = re.compile(r"([0-9]{3}) ([0-9]{3})")

RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper
RECOVERY_GROUP = 5
_CLASS = "".join(sorted(set(RECOVERY_ALPHABET + RECOVERY_ALPHABET.upper())))
# Typed with or without the dash, in either case. No flags: pydantic reuses the pattern.
RECOVERY_CODE_RE = re.compile(rf"[{_CLASS}]{{{RECOVERY_GROUP}}}-?[{_CLASS}]{{{RECOVERY_GROUP}}}")


def ungrouped(code: str) -> str:
    """A code typed as an authenticator app shows it ("123 456") as six digits;
    anything else as it is, for the usual checks to refuse."""
    grouped = _GROUPED_TOTP_RE.fullmatch(code)
    return grouped[1] + grouped[2] if grouped else code
