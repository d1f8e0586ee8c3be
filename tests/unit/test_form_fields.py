"""Whole numbers as people type them: broker.numbers and the portal's number fields."""

from __future__ import annotations

import pytest

from broker.numbers import ascii_int
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
