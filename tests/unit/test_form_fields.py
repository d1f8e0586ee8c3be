"""Numbers as people type them: broker.numbers, the portal's number fields and the
command line's number options."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from broker import cli_numbers
from broker.numbers import ascii_decimal, ascii_int
from broker.web.forms import BadField, share, whole_number


@pytest.mark.parametrize(("typed", "number"), [("", None), ("0", 0), ("40", 40), ("-1", -1)])
def test_whole_numbers_in_ascii_digits_are_read(typed: str, number: int | None) -> None:
    assert whole_number(typed, "caps.max") == number


@pytest.mark.parametrize(
    "typed",
    ["drei", "٣", "４０", "1_000", "1e3", "4.0", " 4", "+4", str(2**63), "9" * 5000],
)
def test_what_only_looks_like_a_whole_number_is_refused(typed: str) -> None:
    with pytest.raises(BadField) as refused:
        whole_number(typed, "caps.max")
    assert (refused.value.key, refused.value.label) == ("form.number", "caps.max")


@pytest.mark.parametrize(
    ("typed", "fraction"), [("", None), ("0", 0.0), ("50", 0.5), ("12,5", 0.125), ("100", 1.0)]
)
def test_percentages_take_a_comma_or_a_dot(typed: str, fraction: float | None) -> None:
    assert share(typed, "caps.percent") == fraction


@pytest.mark.parametrize(
    "typed", ["100.5", "101", "-5", "nan", "inf", "1e1", "٥٠", "5_0", "12,", ",5", "1" * 400]
)
def test_what_is_no_percentage_is_refused(typed: str) -> None:
    with pytest.raises(BadField) as refused:
        share(typed, "caps.percent")
    assert refused.value.key == "form.percent"


@pytest.mark.parametrize(
    ("typed", "number"),
    [("0", 0), ("007", 7), ("-12", -12), ("9" * 19, int("9" * 19)), ("9" * 20, None)],
)
def test_ascii_int_reads_up_to_19_ascii_digits(typed: str, number: int | None) -> None:
    assert ascii_int(typed) == number


@pytest.mark.parametrize("typed", ["", "-", "٣", "²", "1_000", " 4", "+4", "4.0", "9" * 5000])
def test_ascii_int_refuses_what_int_would_read_or_choke_on(typed: str) -> None:
    assert ascii_int(typed) is None


@pytest.mark.parametrize(
    ("typed", "number"), [("0", 0.0), ("0.25", 0.25), ("0,25", 0.25), ("1", 1.0), ("100", 100.0)]
)
def test_ascii_decimal_takes_a_dot_or_a_comma(typed: str, number: float) -> None:
    assert ascii_decimal(typed) == number


@pytest.mark.parametrize(
    "typed", ["", ".5", "5.", "-0.5", "nan", "inf", "1e3", "١", "0.٥", "1_0", " 0.5", "1000"]
)
def test_ascii_decimal_refuses_what_float_would_read(typed: str) -> None:
    assert ascii_decimal(typed) is None


@pytest.mark.parametrize(
    ("parse", "typed", "value"),
    [
        (cli_numbers.whole_number, "40", 40),
        (cli_numbers.whole_number, "-1", -1),
        (cli_numbers.decimal, "0,5", 0.5),
        (cli_numbers.int_or_none, "600", 600),
        (cli_numbers.int_or_none, " None ", None),
        (cli_numbers.bounded_int(1, 10), "10", 10),
    ],
)
def test_command_line_numbers_are_read(
    parse: Callable[[str], object], typed: str, value: float | None
) -> None:
    assert parse(typed) == value


@pytest.mark.parametrize(
    ("parse", "typed"),
    [
        (cli_numbers.whole_number, "٣"),
        (cli_numbers.whole_number, " 40 "),
        (cli_numbers.whole_number, "4_0"),
        (cli_numbers.whole_number, "1e3"),
        (cli_numbers.decimal, "nan"),
        (cli_numbers.decimal, "inf"),
        (cli_numbers.decimal, "１"),
        (cli_numbers.int_or_none, "١٠"),
        (cli_numbers.int_or_none, "10m"),
        (cli_numbers.bounded_int(1, 10), "٣"),
        (cli_numbers.bounded_int(1, 10), "11"),
        (cli_numbers.bounded_int(1, 10), "9" * 5000),
    ],
)
def test_command_line_numbers_refuse_what_int_and_float_would_read(
    parse: Callable[[str], object], typed: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse(typed)
