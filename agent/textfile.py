"""The agent's own small text files (settings, static desktop list, token),
read with one wording for what can go wrong."""

from __future__ import annotations

import codecs
from pathlib import Path


class Unreadable(Exception):
    """A file that cannot be read as UTF-8 text; the message says why and where."""


def read_utf8(path: Path, label: str = "") -> str:
    """The file's text, without a leading byte order mark (Windows Notepad writes
    one; it is no part of the first key or of the token). A file that is missing,
    not readable or not UTF-8 raises Unreadable; `label` ("token file") names the
    file in the message. A bad byte is given by position only: it may belong to
    a secret."""
    named = f"the {label} {path}" if label else str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Unreadable(f"cannot read {named}: {exc.strerror}") from None
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"{named} is not UTF-8 text (byte {skip + exc.start})") from None
