"""Which host a token belongs to, remembered per broker process."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownHost:
    """The host a token belongs to, as remembered by this process."""

    id: int
    name: str


class TokenCache:
    """token hash -> host, so the usual report needs no look-up. A stale entry is
    harmless: the storing UPDATE checks the token hash itself."""

    MAX = 20_000

    def __init__(self) -> None:
        self._hosts: dict[str, KnownHost] = {}

    def get(self, digest: str) -> KnownHost | None:
        return self._hosts.get(digest)

    def put(self, digest: str, host: KnownHost) -> None:
        if len(self._hosts) >= self.MAX:
            self._hosts.clear()
        self._hosts[digest] = host

    def forget(self, digest: str) -> None:
        self._hosts.pop(digest, None)
