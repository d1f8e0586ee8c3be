"""Delivering reports to the broker, and judging its answer.

The agent's token is read from its file for every report (so a new token needs
no restart) and kept in a Secret, whose repr never shows it; it goes into the
Authorization header and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from agent import __version__, http
from agent.textfile import Unreadable, read_utf8
from agent.wire import BadResponse, Response, parse_response

REPORT_PATH = "/api/v1/agent/report"
DEFAULT_TIMEOUT_S = 10.0


class Secret:
    """A value that must never appear in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


class TokenError(Exception):
    pass


def read_token(path: Path) -> Secret:
    """The token from its file, without surrounding white space."""
    try:
        token = read_utf8(path, "token file").strip()
    except Unreadable as exc:
        raise TokenError(str(exc)) from None
    if not token:
        raise TokenError(f"the token file {path} is empty")
    if any(c.isspace() for c in token):
        raise TokenError(f"the token file {path} holds more than one token")
    odd = next((i for i, c in enumerate(token) if not c.isprintable()), None)
    if odd is not None:  # by position only: the rest is the secret
        raise TokenError(f"the token file {path} holds a control character (at {odd + 1})")
    return Secret(token)


class Verdict(StrEnum):
    DELIVERED = "delivered"
    UNAVAILABLE = "unavailable"  # no answer, 5xx, 429: try again after a backoff
    REJECTED = "rejected"  # 4xx: retrying the same way will not help; a person must act
    SEQ_CONFLICT = "seq_conflict"  # 409: the broker has seen this seq or a higher one


@dataclass(frozen=True)
class Delivery:
    verdict: Verdict
    reason: str = ""  # for a person reading the log
    status: int | None = None
    response: Response | None = None
    seq_hint: int | None = None  # 409: the last seq the broker has, where it says
    retry_after_s: float | None = None  # 429, 5xx: when the broker asks to try again


def _broker_error(body: bytes) -> tuple[str, str, dict[str, object]]:
    """(code, message, whole object) of a {"error": ..., "message": ...} answer."""
    try:
        raw = json.loads(body)
    except ValueError:
        return "", "", {}
    if not isinstance(raw, dict):
        return "", "", {}
    return str(raw.get("error") or ""), str(raw.get("message") or "")[:200], raw


# A --broker with a path (the report URL itself, /api/v1): the agent appends
# /api/v1/agent/report to it, which the broker does not know.
_NO_ENDPOINT = (
    "no report endpoint at this URL: --broker takes the broker's base URL "
    "(https://host[:port], plus only the path prefix a reverse proxy adds), not the report URL"
)

_REJECTION_HINTS = {
    400: "the report was refused as invalid; a host clock more than 5 minutes off the "
    "broker's is the usual cause",
    401: "the broker does not accept the agent's token: check the token file",
    403: "the broker does not accept this token for this host: check the token file "
    "and --host-name",
    404: _NO_ENDPOINT,
    405: _NO_ENDPOINT,
    413: "the report is larger than the broker accepts",
    422: "the broker does not understand the report: agent and broker versions may not match",
}


def judge(status: int, body: bytes, retry_after_s: float | None = None) -> Delivery:
    """What an answer of the broker means for the agent; `retry_after_s` is the
    answer's Retry-After."""
    if 200 <= status < 300:
        try:
            return Delivery(Verdict.DELIVERED, status=status, response=parse_response(body))
        except BadResponse as exc:
            return Delivery(Verdict.UNAVAILABLE, f"gave an answer not understood: {exc}", status)
    if status == 429 or status >= 500:
        asked = f" and asked to wait {retry_after_s:g} s" if retry_after_s is not None else ""
        return Delivery(
            Verdict.UNAVAILABLE, f"answered {status}{asked}", status, retry_after_s=retry_after_s
        )
    code, message, raw = _broker_error(body)
    said = f" ({'; '.join(p for p in (code, message) if p)})" if code or message else ""
    if status == 409:
        hint = raw.get("last_seq")
        seq_hint = hint if isinstance(hint, int) and not isinstance(hint, bool) else None
        return Delivery(
            Verdict.SEQ_CONFLICT, f"the broker has seen a higher seq{said}", status, None, seq_hint
        )
    if 300 <= status < 400:
        hint = "the broker URL redirects elsewhere (http to https?): give --broker the final URL"
    else:
        hint = _REJECTION_HINTS.get(status, "unexpected answer")
    return Delivery(Verdict.REJECTED, f"{status}: {hint}{said}", status)


def file_stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when a file is rewritten or replaced (inode, modification
    time, size) or its owner or mode is corrected (change time); None when it
    cannot be looked at."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class Reporter:
    """Sends reports. The token is read when first needed and again after the
    broker refused it, so installing a new token needs no restart."""

    def __init__(
        self, broker_url: str, token_file: Path, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.url = broker_url.rstrip("/") + REPORT_PATH
        http.parse_url(self.url)  # a wrong URL fails at start, not at the first report
        self._token_file = token_file
        self._timeout_s = timeout_s
        self._token: Secret | None = None
        # The token file as it was when the token in use was read.
        self._token_stamp: tuple[int, int, int, int] | None = None

    async def send(self, body: bytes) -> Delivery:
        try:
            if self._token is None:
                self._token_stamp = file_stamp(self._token_file)
                self._token = read_token(self._token_file)
        except TokenError as exc:
            return Delivery(Verdict.REJECTED, str(exc))
        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Content-Type": "application/json",
            "User-Agent": f"vdi-agent/{__version__}",
        }
        try:
            answer = await http.post(self.url, body, headers, self._timeout_s)
        except http.HttpError as exc:
            return Delivery(Verdict.UNAVAILABLE, str(exc))
        if answer.status in (401, 403):
            self._token = None
        return judge(answer.status, answer.body, answer.retry_after_s)

    def token_replaced(self) -> Callable[[], bool]:
        """A check that turns true once the token file differs from what it was when
        the refused token was read (an administrator installed a new token).

        Compared with the file as read, not as it is at the refusal: the token is
        kept between reports, so a new one usually lands in the file before the
        report that the old one gets refused for (rotate, install, next report).
        """
        before = self._token_stamp
        return lambda: file_stamp(self._token_file) != before
