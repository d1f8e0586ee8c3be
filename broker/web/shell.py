"""A command line people copy from a page into whatever shell they have.

Staff run `vdi-connect` from bash, PowerShell or the Windows command prompt.
POSIX quoting (shlex) puts single quotes around any non-ASCII word, and cmd.exe
passes single quotes on as part of the word, so `--pool 'Außendienst'` named a
pool that does not exist. Double quotes mean the same in all three shells for
the words we print (pool names, user names, the broker's URL); a word with a
character any of them treats specially inside double quotes keeps POSIX quoting.
"""

from __future__ import annotations

import re
import shlex

_PLAIN = re.compile(r"[\w@+=:,./-]+")
_SPECIAL = re.compile(r"[\"'$`\\!%]")


def _word(word: str) -> str:
    if _PLAIN.fullmatch(word):
        return word
    if _SPECIAL.search(word):
        return shlex.quote(word)
    return f'"{word}"'


def command_line(words: list[str]) -> str:
    return " ".join(_word(w) for w in words)
