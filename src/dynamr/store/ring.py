"""The consistent-hash ring: which nodes hold a key, in which order.

Each physical node owns ``vnodes`` tokens, ``xxh3_64(node_id#i)``; a key hashes with ``xxh3_64`` (stable
across processes and versions) and belongs to the first token clockwise. The *walk* of a key is every
distinct physical node in clockwise order from there: its first N entries are the preference list, the
rest are fallbacks for sloppy quorum. Walks are precomputed per token, so a lookup is one bisect.
Pure logic, no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import xxhash


def key_hash(key: bytes) -> int:
    return int(xxhash.xxh3_64_intdigest(key))


def token_of(node_id: str, index: int) -> int:
    return int(xxhash.xxh3_64_intdigest(f"{node_id}#{index}".encode()))


class Ring:
    """An immutable ring over a set of node ids."""

    SPACE = 1 << 64

    def __init__(self, node_ids: Iterable[str], vnodes: int) -> None:
        self.node_ids = tuple(sorted(set(node_ids)))
        if not self.node_ids:
            raise ValueError("a ring needs at least one node")
        self.vnodes = vnodes
        entries = sorted((token_of(node, i), node) for node in self.node_ids for i in range(vnodes))
        self._tokens = [token for token, _ in entries]
        self._owners = [node for _, node in entries]
        self._walks = self._precompute_walks()

    def _precompute_walks(self) -> list[tuple[str, ...]]:
        count = len(self._owners)
        total = len(self.node_ids)
        walks: list[tuple[str, ...]] = []
        for start in range(count):
            seen: list[str] = []
            index = start
            while len(seen) < total:
                owner = self._owners[index % count]
                if owner not in seen:
                    seen.append(owner)
                index += 1
            walks.append(tuple(seen))
        return walks

    def walk(self, key: bytes) -> tuple[str, ...]:
        """Every node, in the order a key's replicas (then fallbacks) are chosen."""
        return self.walk_of_hash(key_hash(key))

    def walk_of_hash(self, hashed: int) -> tuple[str, ...]:
        """The walk of a key whose :func:`key_hash` is ``hashed``."""
        index = bisect.bisect_left(self._tokens, hashed)
        return self._walks[index % len(self._walks)]

    def preference_list(self, key: bytes, n: int) -> tuple[str, ...]:
        """The first ``n`` distinct nodes clockwise from the key: its replicas."""
        return self.walk(key)[:n]

    def ownership(self) -> dict[str, float]:
        """Fraction of the hash space for which each node is the first replica."""
        share = dict.fromkeys(self.node_ids, 0)
        previous = self._tokens[-1] - self.SPACE
        for token, owner in zip(self._tokens, self._owners, strict=True):
            share[owner] += token - previous
            previous = token
        return {node: size / self.SPACE for node, size in share.items()}
