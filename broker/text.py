"""Text from outside: whether UTF-8 can hold it, lists written with commas, and
the name a mistyped one was likely meant to be."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def encodable(value: str, encoding: str = "utf-8") -> bool:
    """Whether UTF-8 (or `encoding`, such as a terminal's) can hold `value`.
    Bytes that were not UTF-8 reach Python as lone surrogates (command-line
    arguments and standard input from a Latin-1 terminal or a Windows-1252 file;
    a form in UTF-7): they pass every pattern and fail only later, wherever the
    text is encoded (password hashing, token comparison, the database driver)."""
    try:
        value.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def comma_separated(text: str) -> list[str]:
    """The items of a list written with commas ("a, b,,c"): trimmed, empty ones
    left out."""
    return [part.strip() for part in text.split(",") if part.strip()]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """ " (did you mean X?)" for the known name `name` is most likely a typo of,
    else ""."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
