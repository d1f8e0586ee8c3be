"""Make untrusted text safe to store and show in the audit log."""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 control characters, DEL, and Unicode line/paragraph separators and
# bidi overrides: anything that could forge a new log line or reorder text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_text(value: str, max_length: int = 256) -> str:
    """Replace control characters with visible escapes and cap the length."""
    escaped = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    if len(escaped) > max_length:
        return escaped[: max_length - 1] + "…"
    return escaped


def escape_detail(value: Any) -> Any:
    """Escape every string inside a JSON-like value (keys included)."""
    if isinstance(value, str):
        return escape_text(value, max_length=1024)
    if isinstance(value, dict):
        return {escape_text(str(k), 64): escape_detail(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_detail(v) for v in value]
    return value
