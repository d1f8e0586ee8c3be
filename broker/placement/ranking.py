"""A ranking of hosts that is kept and moved one host at a time.

place.rank_hosts() scores and sorts every host for each request. For a
requester without a critical team the ranking depends on the hosts alone, and
between two readings of the hosts (broker.sessions.host_board) only the host
that took the last session changes. So the ranking is kept with the reading,
and a changed host is moved to its new place instead of sorting all 500 again.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from broker.placement import filters
from broker.placement.model import HostView

# place.rank_hosts' order without a team penalty: load index, then name. The id
# only makes the key unique, so that a host is found again by its old key.
_Key = tuple[float, str, int]


def _key(host: HostView) -> _Key:
    return host.load_index, host.name, host.id


@dataclass(frozen=True)
class HostRanking:
    """Every host, and the accepting ones best first, as place.rank_hosts()
    ranks them for a requester without a critical team.

    A ranking is never changed: requests still being placed hold it in their
    snapshots. `with_hosts` gives a new one."""

    hosts: Mapping[int, HostView]
    ranked: Sequence[tuple[HostView, float]]
    _keys: Sequence[_Key]

    @classmethod
    def of(cls, hosts: Iterable[HostView]) -> HostRanking:
        by_id = {h.id: h for h in hosts}
        accepting = sorted((h for h in by_id.values() if filters.host_accepting(h)), key=_key)
        return cls(by_id, [(h, h.load_index) for h in accepting], [_key(h) for h in accepting])

    def with_hosts(self, changed: Iterable[HostView]) -> HostRanking:
        """This ranking with these hosts' views replaced (or added)."""
        hosts = dict(self.hosts)
        ranked = list(self.ranked)
        keys = list(self._keys)
        for view in changed:
            old = hosts.get(view.id)
            if old is not None and filters.host_accepting(old):
                i = bisect_left(keys, _key(old))
                del keys[i], ranked[i]
            hosts[view.id] = view
            if filters.host_accepting(view):
                key = _key(view)
                i = bisect_left(keys, key)
                keys.insert(i, key)
                ranked.insert(i, (view, view.load_index))
        return HostRanking(hosts, ranked, keys)


def first(
    ranked: Sequence[tuple[HostView, float]], n: int, keep: Callable[[HostView], bool]
) -> list[tuple[HostView, float]]:
    """The first `n` entries of a ranking whose host `keep` accepts."""
    out = []
    for entry in ranked:
        if keep(entry[0]):
            out.append(entry)
            if len(out) == n:
                break
    return out
