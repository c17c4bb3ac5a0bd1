"""Anti-entropy's hash trees and repair plans (pure): replicas that exchange pairwise converge."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.store import merkle, versions
from dynamr.store.merkle import SEGMENTS, SharedSet, Tree
from dynamr.store.ring import Ring
from dynamr.store.versions import Sibling, State

Store = dict[bytes, State]


def _state(rng: random.Random, writes: int) -> State:
    state: State = versions.EMPTY
    for _ in range(writes):
        actor = rng.choice(["n1@a", "n2@b", "n3@c"])
        context = versions.context_of(state) if rng.random() < 0.7 else {}
        state, _ = versions.write(state, context, actor, None if rng.random() < 0.1 else rng.randbytes(3))
    return state


def _side(ring: Ring, n: int, me: str, peer: str, store: Store, key_leaves: Sequence[int] = (),
          chunks: Sequence[bytes] = (), chunk_leaves: Sequence[int] = ()) -> SharedSet:
    shared = SharedSet(ring, n, me, peer, key_leaves, chunk_leaves)
    for key in sorted(store):
        shared.add_key(key, versions.dots_of(versions.encode_state(store[key]))[0])
    for cid in chunks:
        shared.add_chunk(cid)
    return shared


def _exchange(ring: Ring, n: int, a: str, b: str, stores: dict[str, Store], chunks: dict[str, set[bytes]]) -> int:
    """One exchange, as the node runs it: trees, differing leaves listed, keys fetched, merged and sent."""
    mine = _side(ring, n, a, b, stores[a], chunks=sorted(chunks[a]))
    theirs = _side(ring, n, b, a, stores[b], chunks=sorted(chunks[b]))
    key_leaves = mine.keys.differing(theirs.keys.leaves)
    chunk_leaves = mine.chunks.differing(theirs.chunks.leaves)
    if not key_leaves and not chunk_leaves:
        return 0
    mine = _side(ring, n, a, b, stores[a], key_leaves, sorted(chunks[a]), chunk_leaves)
    theirs = _side(ring, n, b, a, stores[b], key_leaves, sorted(chunks[b]), chunk_leaves)
    plan = merkle.plan_keys(mine.listed_keys, theirs.listed_keys)
    for key in plan.fetch:
        stores[a][key] = versions.merge(stores[a].get(key, ()), stores[b][key])
    for key in plan.send:
        stores[b][key] = versions.merge(stores[b].get(key, ()), stores[a][key])
    moves = merkle.plan_chunks(mine.listed_chunks, theirs.listed_chunks)
    chunks[a] |= set(moves.fetch)
    chunks[b] |= set(moves.send)
    return len(plan.fetch) + len(plan.send) + len(moves.fetch) + len(moves.send)


def test_a_tree_does_not_depend_on_the_order_keys_are_added_in() -> None:
    rng = random.Random(1)
    items = [(rng.getrandbits(64), rng.getrandbits(64)) for _ in range(500)]
    a, b = Tree(), Tree()
    for hashed, digest in items:
        a.add(hashed, digest)
    for hashed, digest in reversed(items):
        b.add(hashed, digest)
    assert a.leaves == b.leaves and a.root() == b.root() and a.differing(b.leaves) == []
    b.add(items[0][0], items[0][1])  # the key taken out again: its leaf differs
    assert a.differing(b.leaves) == [merkle.segment_of(items[0][0])] and a.root() != b.root()


def test_a_digest_covers_the_versions_not_their_encoding() -> None:
    one = Sibling("n1@a", 1, {"n2@b": 1}, b"x")
    two = Sibling("n2@b", 2, {}, b"y")

    def digest(key: bytes, state: State) -> int:
        return merkle.key_digest(key, versions.dots_of(versions.encode_state(state))[0])

    assert digest(b"k", (one, two)) == digest(b"k", (two, one))
    assert digest(b"k", (one, two)) == digest(b"k", (one._replace(past={}), two))  # a pruned context
    assert digest(b"k", (one,)) != digest(b"k", (one, two))
    assert digest(b"k", (one,)) != digest(b"j", (one,))
    assert versions.dots_of(versions.encode_state((one, two))) == ([("n1@a", 1), ("n2@b", 2)], True)
    assert versions.dots_of(b"") == ([], False)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), nodes=st.integers(2, 5), n=st.integers(1, 3))
def test_pairwise_exchanges_bring_every_replica_to_the_same_versions(seed: int, nodes: int, n: int) -> None:
    n = min(n, nodes)
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(1, nodes + 1)]
    ring = Ring(names, 8)
    truth: Store = {f"k{i}".encode(): _state(rng, rng.randint(1, 3)) for i in range(rng.randint(0, 300))}
    stores: dict[str, Store] = {name: {} for name in names}
    chunks: dict[str, set[bytes]] = {name: set() for name in names}
    all_chunks = [rng.randbytes(16) for _ in range(rng.randint(0, 40))]
    for key, state in truth.items():  # each owner holds some of the versions, or none (a wiped disk)
        for owner in ring.preference_list(key, n):
            kept = tuple(s for s in state if rng.random() < 0.6)
            if kept:
                stores[owner][key] = versions.merge(kept)
    for cid in all_chunks:
        for owner in ring.preference_list(cid, n):
            if rng.random() < 0.6:
                chunks[owner].add(cid)
    for a, b in itertools.permutations(names, 2):
        _exchange(ring, n, a, b, stores, chunks)
    for a, b in itertools.permutations(names, 2):  # converged: nothing left to move
        assert _exchange(ring, n, a, b, stores, chunks) == 0
    for key, state in truth.items():
        held = [versions.dots(stores[o].get(key, ())) for o in ring.preference_list(key, n)]
        # every owner holds what any owner had (versions no owner kept are lost to all of them)
        assert all(h == held[0] for h in held), key
        assert held[0] <= versions.dots(state)
    for cid in all_chunks:
        holders = [cid in chunks[o] for o in ring.preference_list(cid, n)]
        assert all(holders) or not any(holders)


def test_a_wiped_replica_gets_every_key_back_from_one_exchange() -> None:
    ring = Ring(["n1", "n2", "n3"], 16)
    rng = random.Random(7)
    full: Store = {f"key-{i}".encode(): _state(rng, 2) for i in range(2000)}
    stores = {"n1": dict(full), "n2": {}, "n3": dict(full)}
    chunks: dict[str, set[bytes]] = {"n1": {b"c" * 16}, "n2": set(), "n3": {b"c" * 16}}
    moved = _exchange(ring, 3, "n2", "n1", stores, chunks)
    assert moved == 2001 and stores["n2"] == full and chunks["n2"] == {b"c" * 16}
    assert len(_side(ring, 3, "n2", "n1", stores["n2"]).keys.differing([0] * SEGMENTS)) > SEGMENTS * 0.8
