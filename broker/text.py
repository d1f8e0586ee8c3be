"""Text from outside: what UTF-8 can hold."""

from __future__ import annotations


def encodable(value: str) -> bool:
    """Whether UTF-8 can hold `value`. Bytes that were not UTF-8 reach Python as
    lone surrogates (command-line arguments and standard input from a Latin-1
    terminal or a Windows-1252 file; a form in UTF-7): they pass every pattern
    and fail only later, wherever the text is encoded (password hashing, token
    comparison, the database driver)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
