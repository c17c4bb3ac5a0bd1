"""Hash trees for anti-entropy: what two replicas compare to find the keys and chunks they disagree on.

Pure logic, no I/O; :mod:`dynamr.store.antientropy` feeds it what a node stores and carries out the plan.

For a pair of nodes A and B the *shared set* is every key (or chunk) whose preference list at the cluster's
N holds both. Each side summarises its copy of the shared set as a tree of :data:`SEGMENTS` leaves: a key
falls in the leaf given by the top bits of its ring hash, and a leaf is the XOR of its keys' digests. XOR
makes a leaf independent of the order keys are met in, so a tree is built from one pass over the engine in
key order, and the same set of (key, version) pairs always gives the same tree, whoever built it.

A key's digest covers the key and the *dots* of its versions (see :mod:`dynamr.store.versions`): two
replicas with the same dots hold the same versions, whatever else their encodings differ in. A chunk's
digest covers its id alone: chunks are immutable.

Comparing two trees names the leaves that differ; the keys of those leaves are then listed with their
digests on both sides and :func:`plan_keys` says which to fetch and which to send. Merging is idempotent
and commutative, so a key in both lists is fetched, merged here and the merged state sent back: both
sides end with the same versions.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import xxhash

from dynamr.store.ring import Ring, key_hash

#: bits of a key's ring hash that choose its leaf
SEGMENT_BITS = 10
#: leaves per tree
SEGMENTS = 1 << SEGMENT_BITS
_LEAVES = struct.Struct(f">{SEGMENTS}Q")


def segment_of(hashed: int) -> int:
    """The leaf of a key (or chunk) whose ring hash is ``hashed``."""
    return hashed >> (64 - SEGMENT_BITS)


def key_digest(key: bytes, dots: Iterable[tuple[str, int]]) -> int:
    """A key's fingerprint: the key and the dots of its versions (not their encoding)."""
    return int(xxhash.xxh3_64_intdigest(key + b"\0" + ";".join(f"{a}:{c}" for a, c in sorted(dots)).encode()))


def chunk_digest(chunk_id: bytes) -> int:
    return int(xxhash.xxh3_64_intdigest(b"chunk\0" + chunk_id))


class Tree:
    """The leaves of one side's copy of a shared set."""

    __slots__ = ("items", "leaves")

    def __init__(self, leaves: Sequence[int] | None = None) -> None:
        if leaves is not None and len(leaves) != SEGMENTS:
            raise ValueError(f"a tree has {SEGMENTS} leaves (got {len(leaves)})")
        self.leaves = list(leaves) if leaves is not None else [0] * SEGMENTS
        #: how many keys (or chunks) went in
        self.items = 0

    def add(self, hashed: int, digest: int) -> None:
        self.leaves[hashed >> (64 - SEGMENT_BITS)] ^= digest
        self.items += 1

    def root(self) -> int:
        """One number for the whole tree: equal roots, equal sets (with overwhelming probability)."""
        return int(xxhash.xxh3_64_intdigest(_LEAVES.pack(*self.leaves)))

    def differing(self, other: Sequence[int]) -> list[int]:
        """The leaves where ``other`` (the peer's leaves) differs from this tree."""
        return [i for i, (a, b) in enumerate(zip(self.leaves, other, strict=True)) if a != b]


class SharedSet:
    """Builds one node's trees of a shared set, and lists the keys and chunks of chosen leaves."""

    def __init__(self, ring: Ring, n: int, me: str, peer: str, key_leaves: Iterable[int] = (),
                 chunk_leaves: Iterable[int] = ()) -> None:
        self.ring = ring
        self.n = n
        self.me = me
        self.peer = peer
        self.key_leaves = frozenset(key_leaves)
        self.chunk_leaves = frozenset(chunk_leaves)
        self.keys = Tree()
        self.chunks = Tree()
        #: (key, digest) and chunk ids of the listed leaves
        self.listed_keys: dict[bytes, int] = {}
        self.listed_chunks: list[bytes] = []

    def _shared(self, hashed: int) -> bool:
        owners = self.ring.walk_of_hash(hashed)[:self.n]
        return self.me in owners and self.peer in owners

    def add_key(self, key: bytes, dots: Sequence[tuple[str, int]]) -> None:
        """A key this side holds, with the dots of its versions (:func:`dynamr.store.versions.dots_of`)."""
        hashed = key_hash(key)
        if not dots or not self._shared(hashed):
            return
        digest = key_digest(key, dots)
        self.keys.add(hashed, digest)
        if self.key_leaves and segment_of(hashed) in self.key_leaves:
            self.listed_keys[key] = digest

    def add_chunk(self, chunk_id: bytes) -> None:
        hashed = key_hash(chunk_id)
        if not self._shared(hashed):
            return
        self.chunks.add(hashed, chunk_digest(chunk_id))
        if self.chunk_leaves and segment_of(hashed) in self.chunk_leaves:
            self.listed_chunks.append(chunk_id)


@dataclass(frozen=True, slots=True)
class Repair:
    """What one exchange moves: keys (or chunks) to fetch from the peer and to send to it."""

    fetch: tuple[bytes, ...]
    send: tuple[bytes, ...]

    @property
    def empty(self) -> bool:
        return not self.fetch and not self.send


def plan_keys(mine: Mapping[bytes, int], theirs: Mapping[bytes, int]) -> Repair:
    """Keys to fetch (the peer has a version this side lacks) and to send (the other way round); a key whose
    digests differ is in both: fetched, merged, and the merged state sent back."""
    fetch = tuple(sorted(k for k, d in theirs.items() if mine.get(k) != d))
    send = tuple(sorted(k for k, d in mine.items() if theirs.get(k) != d))
    return Repair(fetch, send)


def plan_chunks(mine: Iterable[bytes], theirs: Iterable[bytes]) -> Repair:
    """Chunks are immutable: only a missing copy needs moving."""
    here, there = set(mine), set(theirs)
    return Repair(tuple(sorted(there - here)), tuple(sorted(here - there)))
