"""Read PromQL text without a full parser: metric names, calls and range selectors.

Why: every metric a dashboard panel or an alert rule uses must exist in the
broker's or the agent's exposition. Both the static check against docs/design.md
and the check against a live broker need the names a query refers to. A careful
token pass is enough for the PromQL we write; Grafana's `$variables` are accepted.
"""

from __future__ import annotations

import re

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# Words that look like identifiers but are not metric names.
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
    }
)

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
# Numbers and durations (1, 0.95, 1e-9, 0x1f, 5m, 1h30m), not digits inside names.
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d[\d.]*(?:[eE][+-]?\d+)?[a-zA-Z]*)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def histogram_base(name: str) -> str:
    """The histogram a `_bucket`, `_sum` or `_count` series belongs to; else `name`."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def blank_strings(expr: str) -> str:
    """`expr` with every string literal's content replaced by spaces (same length).

    Keeps offsets intact for callers that scan parentheses, while quotes in label
    values can no longer be mistaken for syntax.
    """
    return _STRING.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], expr)


def metric_names(expr: str) -> set[str]:
    """Metric names `expr` selects, histogram series mapped to their base name.

    Drops string literals, Grafana variables, label matchers, range selectors,
    grouping label lists, numbers and durations, then keeps every identifier that
    is neither a keyword nor followed by `(` (a function or aggregation).
    """
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word.lower() in KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(histogram_base(word))
    return names


def call_arguments(expr: str, functions: frozenset[str]) -> list[tuple[str, str]]:
    """(function, argument text) for every call of one of `functions` in `expr`."""
    text = blank_strings(expr)
    calls: list[tuple[str, str]] = []
    for match in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", text):
        if match.group(1) not in functions:
            continue
        depth, start = 1, match.end()
        position = start
        while position < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[position], 0)
            position += 1
        if depth:
            raise ValueError(f"unbalanced parentheses in {expr!r}")
        calls.append((match.group(1), expr[start : position - 1]))
    return calls


def range_selectors(expr: str) -> list[str]:
    """The text inside every `[...]` of `expr` (ranges and subqueries)."""
    return [m.group(0)[1:-1] for m in _RANGE.finditer(blank_strings(expr))]
