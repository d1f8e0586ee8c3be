"""What the broker's answers mean to the agent; the token stays secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.protocol import ActionKind
from agent.reporter import Secret, TokenError, Verdict, file_stamp, judge, read_token
from agent.wire import Action


def test_accepted_report_carries_actions_and_interval() -> None:
    body = b'{"actions":[{"id":"a1","kind":"start","desktop":"vm1"}],"interval_s":20}'
    delivery = judge(200, body)
    assert delivery.verdict is Verdict.DELIVERED
    assert delivery.response is not None and delivery.response.interval_s == 20.0
    assert delivery.response.actions == [Action("a1", ActionKind.START, "vm1")]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_broker_trouble_is_retried(status: int) -> None:
    delivery = judge(status, b"")
    assert delivery.verdict is Verdict.UNAVAILABLE and str(status) in delivery.reason


def test_an_answer_not_understood_is_retried() -> None:
    assert judge(200, b"<html>proxy</html>").verdict is Verdict.UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (401, "token"),
        (403, "--host-name"),
        (400, "clock"),
        (413, "larger"),
        (422, "versions"),
        (404, "--broker takes the broker's base URL"),
        (405, "--broker takes the broker's base URL"),
        (418, "unexpected"),
        (307, "redirects"),
    ],
)
def test_refusals_say_what_to_check(status: int, says: str) -> None:
    delivery = judge(status, b'{"error":"some_code","message":"what the broker said"}')
    assert delivery.verdict is Verdict.REJECTED
    assert says in delivery.reason
    assert "some_code" in delivery.reason and "what the broker said" in delivery.reason


def test_seq_conflict_takes_the_brokers_hint_where_given() -> None:
    hinted = judge(409, b'{"error":"seq_not_increasing","message":"m","last_seq":900}')
    assert hinted.verdict is Verdict.SEQ_CONFLICT and hinted.seq_hint == 900
    assert judge(409, b'{"error":"x","last_seq":"900"}').seq_hint is None
    assert judge(409, b"").seq_hint is None


def test_secret_never_shows_in_repr_or_str() -> None:
    secret = Secret("s3cr3t-token")
    assert "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret)
    assert "s3cr3t" not in repr([secret]) and "s3cr3t" not in f"{secret}"
    assert secret.reveal() == "s3cr3t-token"


def test_token_is_read_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  abc.DEF_123  \n")
    assert read_token(path).reveal() == "abc.DEF_123"


def test_a_byte_order_mark_and_crlf_are_not_part_of_the_token(tmp_path: Path) -> None:
    """Saved with Windows Notepad: a UTF-8 byte order mark in front and CRLF."""
    path = tmp_path / "token"
    path.write_bytes(b"\xef\xbb\xbfabc.DEF_123\r\n")
    assert read_token(path).reveal() == "abc.DEF_123"


def test_a_control_character_is_named_by_position(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"t0k3n\x1bxyz\n")
    with pytest.raises(TokenError) as caught:
        read_token(path)
    assert str(caught.value) == f"the token file {path} holds a control character (at 6)"


@pytest.mark.parametrize("content", ["", "\n  \n", "t0k3n-one\nt0k3n-two\n", "t0k3n-one t0k3n-two"])
def test_unusable_token_files_are_refused_without_showing_them(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(TokenError) as caught:
        read_token(path)
    assert "t0k3n" not in str(caught.value)


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="cannot read"):
        read_token(tmp_path / "absent")


def test_a_token_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    """A token pasted through a Latin-1 editor: the message says what is wrong
    and where, not just "UnicodeDecodeError", and shows no byte of it."""
    path = tmp_path / "token"
    path.write_bytes(b"t0k3n-\xe4bc\n")
    with pytest.raises(TokenError) as caught:
        read_token(path)
    assert str(caught.value) == f"the token file {path} is not UTF-8 text (byte 6)"


def test_the_token_file_stamp_sees_a_corrected_mode(tmp_path: Path) -> None:
    """A token file the agent cannot read (wrong owner or mode) is usually fixed
    with chown or chmod, which leave content and modification time alone: the
    refusal wait must end on that too."""
    token = tmp_path / "token"
    token.write_text("a-token\n")
    token.chmod(0o600)
    before = file_stamp(token)
    token.chmod(0o640)
    assert file_stamp(token) != before
    assert file_stamp(tmp_path / "missing") is None
