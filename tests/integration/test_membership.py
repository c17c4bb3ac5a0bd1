"""Membership with real node processes: a cluster under a steady write load grows from three nodes to five
and shrinks back to three with the CLI's join/leave/commit; no acknowledged write is lost, every key ends with
N copies on its current owners, and the load never stops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynamr.localcluster import LocalCluster
from dynamr.rpc import messages as m
from dynamr.store import membership as ms
from dynamr.store.client import Client
from dynamr.store.ring import Ring
from tests.helpers import dynamr, wait_until
from tests.integration.conftest import FAST
from tests.integration.load import WriteLoad


@pytest.fixture
def cluster(tmp_path):  # type: ignore[no-untyped-def]
    from dynamr.config import StoreSettings

    made = LocalCluster.create(tmp_path / "c", 3, StoreSettings.from_dict(dict(FAST)), ephemeral=True)
    made.start()
    yield made
    made.stop()


def _state(cluster: LocalCluster) -> ms.ClusterState:
    """The cluster state as the highest-numbered running node holds it (the last to leave)."""
    node = max((p for p in cluster.running() if p.startswith("n")), key=lambda p: int(p[1:]))
    with Client([cluster.address(node)], cluster.secret, timeout=5.0) as client:
        reply = client.call_node(cluster.address(node), m.ClusterAdmin(action="show"))
    assert isinstance(reply, m.ClusterStateReply)
    return ms.from_record(reply.state)


def _settled(cluster: LocalCluster, owners: tuple[str, ...]) -> bool:
    state = _state(cluster)
    return not state.moving and state.owners == owners


def _cli(cluster: LocalCluster, *args: str) -> str:
    return dynamr("cluster", *args, "--dir", str(cluster.root), cwd=cluster.root).stdout


def _copies(cluster: LocalCluster, keys: list[str], owners: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(key, node) for every owner of a key that does not hold it."""
    ring = Ring(owners, cluster.spec.settings.vnodes)
    addresses = {n: cluster.address(n) for n in owners}
    with Client(cluster.seeds, cluster.secret, timeout=5.0) as client:
        for key in keys:
            for node in ring.preference_list(key.encode(), 3):
                reply = client.call_node(addresses[node], m.ReplicaRead(key=key.encode()))
                if not isinstance(reply, m.ReplicaState) or not reply.state:
                    yield key, node


def test_grow_to_five_and_shrink_back_to_three_under_a_write_load(cluster: LocalCluster) -> None:
    with WriteLoad(cluster, prefix="k", timeout=5.0) as load:
        wait_until(lambda: load.count() > 200, 30, "the load to start")
        for _ in range(2):
            out = _cli(cluster, "add")
            assert "staged: join" in out, out
        plan = _cli(cluster, "plan")
        assert "join n4" in plan and "join n5" in plan and "ring after commit: n1, n2, n3, n4, n5" in plan, plan
        assert "committed" in _cli(cluster, "commit")
        wait_until(lambda: _settled(cluster, ("n1", "n2", "n3", "n4", "n5")), 120, "the join to finish",
                   interval=0.5)
        status = _cli(cluster, "status")
        assert "5 of 5 nodes up" in status and "sent " in status and " keys, " in status, status
        grown = load.count()
        wait_until(lambda: load.count() > grown + 200, 30, "writes to the grown cluster")
        _cli(cluster, "leave", "n1")
        _cli(cluster, "leave", "n2")
        _cli(cluster, "commit")
        wait_until(lambda: _settled(cluster, ("n3", "n4", "n5")), 120, "the leave to finish", interval=0.5)
        wait_until(lambda: not cluster.pid("n1") and not cluster.pid("n2"), 60, "the nodes that left to stop")
        shrunk = load.count()
        wait_until(lambda: load.count() > shrunk + 200, 30, "writes to the shrunk cluster")
    acked = dict(load.acked)
    error_rate = len(load.errors) / max(1, len(load.errors) + len(acked))
    p99 = sorted(load.latencies)[int(len(load.latencies) * 0.99)]
    print(f"\n{len(acked)} writes acknowledged, {len(load.errors)} failed ({100 * error_rate:.2f}%), "
          f"p99 {1000 * p99:.0f} ms", load.errors[:3])
    assert error_rate < 0.01, load.errors[:5]
    final = ("n3", "n4", "n5")
    with Client([cluster.address(n) for n in final], cluster.secret, timeout=5.0) as client:
        lost = [k for k, v in acked.items() if client.get(k).values != (v,)]
        where = {k: [n for n in final if client.call_node(cluster.address(n), m.ReplicaRead(key=k.encode())).state]
                 for k in lost[:3]}
    ring = Ring(final, cluster.spec.settings.vnodes)
    assert lost == [], (f"{len(lost)} acknowledged writes lost: "
                        + "; ".join(f"{k} written at {load.when[k]:.3f} is on {where[k]}, owners "
                                    f"{ring.preference_list(k.encode(), 3)}" for k in lost[:3]))
    keys = sorted(acked)
    assert list(_copies(cluster, keys[::3], final)) == []


def test_a_sender_killed_mid_stream_resumes_and_the_join_completes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dynamr.config import StoreSettings

    settings = StoreSettings.from_dict({**FAST, "handoff_bytes_per_second": 1_000_000})
    cluster = LocalCluster.create(tmp_path / "c", 3, settings, ephemeral=True, coordinator=False)
    cluster.start()
    try:
        value = b"x" * 16384
        with Client(cluster.seeds, cluster.secret, timeout=10.0) as client:
            for i in range(600):  # about 10 MB on every node: 7 s or more of streaming at 1 MB/s
                client.put(f"d{i}", value + str(i).encode())
        _cli(cluster, "add")
        _cli(cluster, "commit")
        wait_until(lambda: _state(cluster).phase == "stream", 60, "the stream phase", interval=0.05)
        assert "n1" not in _state(cluster).acks
        cluster.kill_node("n1")  # kill -9 in the middle of sending its part
        # the others finish theirs meanwhile; the transition waits for n1
        wait_until(lambda: set(_state(cluster).acks) == {"n2", "n3", "n4"}, 60, "the others' parts",
                   interval=0.1)
        cluster.start(["n1"])
        wait_until(lambda: _settled(cluster, ("n1", "n2", "n3", "n4")), 120, "the join to finish after the crash",
                   interval=0.5)
        final = ("n1", "n2", "n3", "n4")
        with Client([cluster.address(n) for n in final], cluster.secret, timeout=10.0) as client:
            assert all(client.get(f"d{i}").values == (value + str(i).encode(),) for i in range(600))
        assert list(_copies(cluster, [f"d{i}" for i in range(0, 600, 2)], final)) == []
        log = cluster.log_file("n1").read_text()
        assert log.count("my part of stream") == 1, "n1 finished its part once, after the restart"
    finally:
        cluster.stop()


def test_a_dead_machine_is_removed_and_its_keys_get_their_copies_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dynamr.config import StoreSettings

    cluster = LocalCluster.create(tmp_path / "c", 3, StoreSettings.from_dict(dict(FAST)), ephemeral=True,
                                  coordinator=False)
    cluster.start()
    try:
        _cli(cluster, "add")
        _cli(cluster, "commit")
        wait_until(lambda: _settled(cluster, ("n1", "n2", "n3", "n4")), 60, "n4 to join", interval=0.3)
        with Client(cluster.seeds, cluster.secret, timeout=10.0) as client:
            for i in range(400):
                client.put(f"r{i}", b"%d" % i)
        cluster.kill_node("n4")  # the machine is gone for good
        _cli(cluster, "remove", "n4")
        assert "committed" in _cli(cluster, "commit")
        wait_until(lambda: _settled(cluster, ("n1", "n2", "n3")), 60, "the removal to finish", interval=0.3)
        final = ("n1", "n2", "n3")
        with Client([cluster.address(n) for n in final], cluster.secret, timeout=10.0) as client:
            assert all(client.get(f"r{i}").values == (b"%d" % i,) for i in range(400))
        assert list(_copies(cluster, [f"r{i}" for i in range(400)], final)) == []
        assert _state(cluster).status("n4") == "left"
    finally:
        cluster.stop()
