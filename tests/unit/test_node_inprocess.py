"""Store nodes wired together in one process (in-memory engines, in-process transport).

These exercise the coordination logic deterministically; the same scenarios run against real processes
in tests/integration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dynamr.config import Quorum
from dynamr.errors import BadRequestError, KeyTooLargeError, QuorumError, ValueTooLargeError
from dynamr.rpc import messages as m
from tests.helpers import async_wait_until
from tests.inprocess import SETTINGS, Cluster


@pytest.fixture
async def cluster3() -> AsyncIterator[Cluster]:
    c = Cluster(3, SETTINGS)
    yield c
    await c.stop()


@pytest.fixture
async def cluster4() -> AsyncIterator[Cluster]:
    c = Cluster(4, SETTINGS)
    yield c
    await c.stop()


async def test_put_get_delete_round_trip(cluster3: Cluster) -> None:
    c = cluster3.client
    ctx = await c.put("k", b"v1")
    assert (await c.get("k")).value == b"v1"
    await c.put("k", b"v2", context=ctx)
    result = await c.get("k")
    assert result.values == (b"v2",)
    await c.delete("k", context=result.context)
    assert not (await c.get("k")).found


async def test_every_replica_holds_the_write(cluster3: Cluster) -> None:
    await cluster3.client.put("k", b"v", w=3)
    assert all(cluster3.local(n, b"k") == (b"v",) for n in cluster3.nodes)


async def test_concurrent_blind_writes_are_siblings_and_context_resolves_them(cluster3: Cluster) -> None:
    c = cluster3.client
    await c.put("k", b"a")
    await c.put("k", b"b")
    result = await c.get("k")
    assert sorted(result.values) == [b"a", b"b"]
    with pytest.raises(BadRequestError, match="siblings"):
        _ = result.value
    await c.put("k", b"ab", context=result.context)
    assert (await c.get("k")).values == (b"ab",)


async def test_hinted_handoff_delivers_and_removes_hints(cluster4: Cluster) -> None:
    key = b"handoff"
    preferred = cluster4.nodes["n1"].ring.preference_list(key, 3)
    victim = preferred[1]
    fallback = cluster4.nodes["n1"].ring.walk(key)[3]
    cluster4.set_down(victim)
    await cluster4.client.put(key, b"while-down", w=3)  # W=3 needs the hinted fallback
    fb = cluster4.nodes[fallback]
    assert [(k, o) for k, o, _ in fb.replica.hints()] == [(key, victim)]
    assert cluster4.local(victim, key) == ()
    cluster4.set_down(victim, False)
    await async_wait_until(lambda: _true(cluster4.local(victim, key) == (b"while-down",)), 5, "handoff")
    await async_wait_until(lambda: _true(not list(fb.replica.hints())), 5, "hint removal")


async def _true(value: bool) -> bool:
    return value


async def test_read_repair_heals_a_stale_replica(cluster3: Cluster) -> None:
    key = b"repair"
    await cluster3.client.put(key, b"old", w=3)
    victim = cluster3.nodes["n1"].ring.preference_list(key, 3)[2]
    cluster3.set_down(victim)
    ctx = (await cluster3.client.get(key)).context
    await cluster3.client.put(key, b"new", context=ctx)
    cluster3.set_down(victim, False)
    assert cluster3.local(victim, key) == (b"old",)
    assert (await cluster3.client.get(key, r=3)).values == (b"new",)
    await async_wait_until(lambda: _true(cluster3.local(victim, key) == (b"new",)), 5, "read repair")


async def test_tombstones_are_purged_only_once_every_node_holds_them(cluster4: Cluster) -> None:
    key = b"gone"
    ctx = await cluster4.client.put(key, b"v", w=3)
    preferred = cluster4.nodes["n1"].ring.preference_list(key, 3)
    cluster4.set_down(preferred[2])
    for node in cluster4.nodes.values():
        node.detector.unreachable(preferred[2])
    await cluster4.client.delete(key, context=ctx)
    first = cluster4.nodes[preferred[0]]
    assert await first.reap_tombstones() == 0  # a node is down: keep the tombstone
    assert first.replica.tombstone_keys() == [key]
    cluster4.set_down(preferred[2], False)

    async def purged() -> bool:
        return all(n.replica.read(key) == () for n in cluster4.nodes.values())

    await async_wait_until(purged, 10, "tombstone purge everywhere")
    assert not (await cluster4.client.get(key)).found


async def test_write_fails_clearly_without_quorum(cluster3: Cluster) -> None:
    key = b"lonely"
    preferred = cluster3.nodes["n1"].ring.preference_list(key, 3)
    cluster3.set_down(preferred[1])
    cluster3.set_down(preferred[2])
    with pytest.raises(QuorumError, match="W=2"):
        await cluster3.client.put(key, b"v")
    assert (await cluster3.client.get(key, r=1)).values == (b"v",)  # the coordinator kept it (not lost)


async def test_limits_and_bad_requests(cluster3: Cluster) -> None:
    with pytest.raises(ValueTooLargeError):
        await cluster3.client.put("k", b"x" * 2048)
    with pytest.raises(KeyTooLargeError):
        await cluster3.client.put("k" * 100, b"x")
    node = cluster3.nodes["n1"]
    with pytest.raises(ValueTooLargeError):  # also enforced by the node, for clients that skip checks
        await node.dispatcher.dispatch(m.Put(key=b"k", value=b"x" * 2048))
    with pytest.raises(BadRequestError, match="R must be"):
        await node.dispatcher.dispatch(m.Get(key=b"k", r=5))
    with pytest.raises(BadRequestError, match="causal context"):
        await node.dispatcher.dispatch(m.Put(key=b"k", value=b"v", context=b"\x93garbage"))


async def test_quorum_defaults_validate(cluster3: Cluster) -> None:
    assert cluster3.nodes["n1"].quorum_for(0) == Quorum(n=3, r=2, w=2)
    with pytest.raises(BadRequestError, match="need 4 nodes"):
        cluster3.nodes["n1"].quorum_for(4)
