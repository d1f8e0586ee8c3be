"""Number options of the command lines (vdi-broker and vdi-connect), as argparse
types: ASCII digits only, as broker.numbers reads them, so that a typo is an
error and not a stored surprise."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from broker.numbers import ascii_decimal, ascii_int


def whole_number(text: str) -> int:
    """An argparse type: a whole number in ASCII digits. int() would also take
    "٣", "4_0" and " 40 ", and store what nobody meant to type."""
    value = ascii_int(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return value


def decimal(text: str) -> float:
    """An argparse type: a decimal in ASCII digits, with a dot or a comma
    (0.25, 0,25). float() would also take "٣", "1e3", "nan" and "inf"."""
    value = ascii_decimal(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number such as 0.25")
    return value


def int_or_none(text: str) -> int | None:
    """`N`, or `none` for settings where none means "no limit" or "not managed"."""
    if text.strip().lower() == "none":
        return None
    value = ascii_int(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a whole number nor 'none'")
    return value


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`."""

    def parse(text: str) -> int:
        value = ascii_int(text)
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number {low} to {high}")
        return value

    return parse
