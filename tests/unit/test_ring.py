from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.store.ring import Ring


def test_ownership_is_balanced_within_tolerance() -> None:
    # With 128 virtual nodes each, no node owns more than 1.25x or less than 0.75x its fair share.
    for count in (3, 5, 8):
        ring = Ring([f"n{i}" for i in range(count)], vnodes=128)
        shares = ring.ownership()
        assert abs(sum(shares.values()) - 1.0) < 1e-9
        fair = 1 / count
        for node, share in shares.items():
            assert 0.75 * fair <= share <= 1.25 * fair, (count, node, share)


def test_keys_spread_evenly_over_replicas() -> None:
    ring = Ring(["a", "b", "c", "d"], vnodes=128)
    counts = dict.fromkeys(ring.node_ids, 0)
    for i in range(20000):
        for node in ring.preference_list(f"key-{i}".encode(), 3):
            counts[node] += 1
    fair = 20000 * 3 / 4
    assert all(0.85 * fair <= c <= 1.15 * fair for c in counts.values()), counts


@settings(max_examples=200)
@given(key=st.binary(min_size=1, max_size=64), count=st.integers(1, 9), n=st.integers(1, 9))
def test_preference_list_has_distinct_nodes(key: bytes, count: int, n: int) -> None:
    ring = Ring([f"node-{i}" for i in range(count)], vnodes=16)
    prefs = ring.preference_list(key, n)
    assert len(prefs) == min(n, count)
    assert len(set(prefs)) == len(prefs)
    assert set(ring.walk(key)) == set(ring.node_ids)


def test_ring_is_the_same_in_every_process() -> None:
    # Hashing must not depend on PYTHONHASHSEED: every node and client computes the same ring.
    ring = Ring(["n1", "n2", "n3"], vnodes=64)
    expected = ring.preference_list(b"stable", 3)
    import subprocess
    import sys
    out = subprocess.run(
        [sys.executable, "-c",
         "from dynamr.store.ring import Ring;print(','.join(Ring(['n1','n2','n3'],64).preference_list(b'stable',3)))"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == ",".join(expected)


def test_removing_a_node_moves_only_its_keys() -> None:
    before = Ring(["a", "b", "c", "d"], vnodes=64)
    after = Ring(["a", "b", "c"], vnodes=64)
    moved = sum(1 for i in range(5000)
                if before.walk(f"k{i}".encode())[0] != "d"
                and before.walk(f"k{i}".encode())[0] != after.walk(f"k{i}".encode())[0])
    assert moved == 0
