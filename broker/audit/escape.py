"""Make untrusted text safe to store and show in the audit log."""

from __future__ import annotations

from typing import Any


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_text(value: str, max_length: int = 256) -> str:
    """Replace every character that does not print as itself with a visible
    escape (\\u000a), and cap the length. That is control characters, line and
    paragraph separators and bidi overrides, which could forge a line or reorder
    text, and also zero-width and direction marks and non-breaking spaces, which
    make a name look like another ("maria\\u200b" beside "maria"). A backslash is
    doubled, so that "\\u0000" typed as text is not read as an escaped NUL."""
    if value.isprintable() and "\\" not in value:
        escaped = value  # the usual case, without a look at each character
    else:
        escaped = "".join(_escape(c) if c == "\\" or not c.isprintable() else c for c in value)
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
