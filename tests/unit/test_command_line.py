"""The vdi-connect command on the connect page: one text that bash, PowerShell
and the Windows command prompt all read as the same words."""

from __future__ import annotations

import shlex

from broker.web.shell import command_line


def test_plain_and_non_ascii_words_stay_unquoted() -> None:
    # cmd.exe passes single quotes on: 'Außendienst' named no pool there.
    words = ["vdi-connect", "https://vdi.example.de", "--user", "felix", "--pool", "Außendienst"]
    line = command_line(words)
    assert line == "vdi-connect https://vdi.example.de --user felix --pool Außendienst"
    assert shlex.split(line) == words


def test_a_pool_with_a_space_gets_double_quotes() -> None:
    words = ["vdi-connect", "https://vdi.example.de", "--pool", "Bauamt Nord 2.0"]
    line = command_line(words)
    assert line.endswith('--pool "Bauamt Nord 2.0"')
    assert shlex.split(line) == words


def test_a_word_special_inside_double_quotes_keeps_posix_quoting() -> None:
    for word in ("a$b c", "50% c", 'say "hi"', "back\\slash x"):
        assert shlex.split(command_line(["x", word])) == ["x", word]
