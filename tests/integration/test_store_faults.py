"""The store with real node processes on loopback: crashes, restarts, wiped disks, handoff, repair."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from dynamr.errors import DynamrError
from dynamr.rpc import messages as m
from dynamr.store import versions
from dynamr.store.client import Client
from dynamr.store.ring import Ring
from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.load import statuses


def replica_values(client: Client, node_id: str, key: bytes) -> tuple[bytes, ...]:
    """What one node holds for a key, read straight from its replica (no quorum)."""
    reply = client.call_node(node_id, m.ReplicaRead(key=key))
    assert isinstance(reply, m.ReplicaState)
    return versions.live_values(versions.decode_state(reply.state))


def test_acknowledged_writes_survive_sigkill_and_restart(make_cluster: MakeCluster) -> None:
    """Jepsen-style set check: every write acknowledged with W=2 reads back after the cluster heals."""
    cluster = make_cluster(3)
    acked: list[str] = []
    failed = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal failed
        with Client(cluster.seeds, cluster.secret, timeout=3.0) as client:
            i = 0
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline and i < 20000:
                key = f"set-{i}"
                try:
                    client.put(key, str(i), w=2)
                    acked.append(key)
                except DynamrError:
                    failed += 1
                i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for victim in ("n2", "n1"):
            count = len(acked)
            wait_until(lambda c=count: len(acked) > c + 300, 30, "writes before the crash")
            cluster.kill_node(victim)
            count = len(acked)
            wait_until(lambda c=count: len(acked) > c + 300, 30, "writes while a node is dead")
            cluster.start([victim])
            count = len(acked)
            wait_until(lambda c=count: len(acked) > c + 300, 30, "writes after the restart")
    finally:
        stop.set()
        thread.join()
    assert len(acked) > 1800
    with Client(cluster.seeds, cluster.secret) as client:
        found = {key for key in acked if client.get(key, r=2).values == (key.removeprefix("set-").encode(),)}
    lost = set(acked) - found
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"


def test_hinted_handoff_delivers_writes_to_a_restarted_node(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4, coordinator=False)  # (every hint counted: no coordinator's claim among them)
    ring = Ring([n.node_id for n in cluster.spec.nodes], cluster.spec.settings.vnodes)
    keys = [f"h-{i}".encode() for i in range(200)]
    owned = [k for k in keys if "n4" in ring.preference_list(k, 3)]
    assert len(owned) > 50
    cluster.kill_node("n4")
    with Client(cluster.seeds, cluster.secret) as client:
        # every live node notices the dead peer within a few seconds (failure_timeout is 1 s here)
        wait_until(lambda: all("n4" in st.down for st in statuses_alive(client, "n4").values()), 5,
                   "peers to mark n4 down")
        for key in keys:
            client.put(key, b"v-" + key, w=3)  # W=3 with n4 dead: only possible through hinted fallbacks
        hints = sum(st.hints for node_id, st in statuses_alive(client, "n4").items())
        assert hints == len(owned)
        cluster.start(["n4"])
        wait_until(lambda: all(st.hints == 0 for st in statuses(client).values()), 30, "all hints delivered")
        for key in owned:
            assert replica_values(client, "n4", key) == (b"v-" + key,)


def statuses_alive(client: Client, dead: str) -> dict[str, m.NodeStatusReply]:
    return {k: v for k, v in client.node_status().items() if k != dead and isinstance(v, m.NodeStatusReply)}


def test_read_repair_heals_a_replica_made_stale(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    with Client(cluster.seeds, cluster.secret) as client:
        client.put("doc", b"old", w=3)
        cluster.kill_node("n3")
        client.put("doc", b"new", context=client.get("doc").context, w=2)
        # the node keeping n3's hint goes down too, so only a read can repair n3 when it is back
        holder = wait_until(lambda: next((n for n, st in client.node_status().items()
                                          if not isinstance(st, DynamrError) and st.hints), None), 30,
                            "the hint for n3 to be kept")
        cluster.kill_node(holder)
        cluster.start(["n3"])
        assert replica_values(client, "n3", b"doc") == (b"old",)
        assert client.get("doc", r=2).values == (b"new",)  # from the live holder of "new", and stale n3
        wait_until(lambda: replica_values(client, "n3", b"doc") == (b"new",), 10, "read repair of n3")


def test_a_write_that_missed_a_node_of_a_cluster_of_n_nodes_reaches_it_without_a_read(
        make_cluster: MakeCluster) -> None:
    """N=3 on three nodes leaves no fallback node to hold a hint: the coordinating node keeps it itself."""
    cluster = make_cluster(3)
    with Client(cluster.seeds, cluster.secret) as client:
        client.put("doc", b"old", w=3)
        gone = client.put("gone", b"x", w=3)
        cluster.kill_node("n3")
        client.put("doc", b"new", context=client.get("doc").context, w=2)
        client.delete("gone", context=gone)
        cluster.start(["n3"])
        wait_until(lambda: replica_values(client, "n3", b"doc") == (b"new",), 30, "the hint to reach n3")
        wait_until(lambda: client.keys_on_nodes(b"gone")["n3"] == (), 30, "the delete to reach n3")


def test_concurrent_writes_become_siblings_and_a_context_resolves_them(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    with Client(cluster.seeds, cluster.secret) as a, Client(list(reversed(cluster.seeds)), cluster.secret) as b:
        base = a.put("cart", b"[]")
        a.put("cart", b"[apple]", context=base)
        b.put("cart", b"[pear]", context=base)
        result = a.get("cart")
        assert sorted(result.values) == [b"[apple]", b"[pear]"]
        b.put("cart", b"[apple, pear]", context=result.context)
        assert a.get("cart", r=3).values == (b"[apple, pear]",)
        # writes with no context at all, from two clients at once
        threads = [threading.Thread(target=c.put, args=("fresh", v)) for c, v in ((a, b"x"), (b, b"y"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result = b.get("fresh", r=3)
        assert sorted(result.values) == [b"x", b"y"]
        a.put("fresh", b"xy", context=result.context)
        assert b.get("fresh", r=3).values == (b"xy",)


def test_wiped_node_rejoins_without_losing_acknowledged_writes(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    ring = Ring([n.node_id for n in cluster.spec.nodes], cluster.spec.settings.vnodes)
    keys = [f"w-{i}" for i in range(300)]
    led_by_n3 = [k for k in keys if ring.preference_list(k.encode(), 3)[0] == "n3"]
    with Client(cluster.seeds, cluster.secret) as client:
        for key in keys:
            client.put(key, b"first")
        epoch = statuses(client)["n3"].epoch
        cluster.kill_node("n3")
        shutil.rmtree(cluster.data_dir("n3"))
        cluster.start(["n3"])
        assert statuses(client)["n3"].epoch != epoch, "a wiped node must come back under a new epoch"
        # n3 coordinates new blind writes of keys it coordinated before the wipe. Were its clock entries
        # reused, the new versions would carry the same dots as the old ones and one would vanish.
        for key in led_by_n3:
            client.call_node("n3", m.Put(key=key.encode(), value=b"second"))
        for key in keys:
            values = sorted(client.get(key, r=2).values)
            expected = [b"first", b"second"] if key in led_by_n3 else [b"first"]
            assert values == expected, key


def test_bad_input_gets_clear_errors_and_the_node_keeps_serving(make_cluster: MakeCluster) -> None:
    import socket

    from dynamr.errors import AuthenticationError, ValueTooLargeError

    cluster = make_cluster(3, max_value_bytes=1 << 20)
    with Client(cluster.seeds, cluster.secret) as client:
        client.put("keep", b"safe")
        with pytest.raises(AuthenticationError, match="refused our cluster secret"), \
                Client(cluster.seeds, b"not-the-secret") as intruder:
            intruder.get("keep")
        with pytest.raises(ValueTooLargeError, match="max_value_bytes"):
            client.put("big", b"x" * (2 << 20))
        with pytest.raises(ValueTooLargeError, match="exceeds"):  # a client that skips its own check
            client.call_node("n1", m.Put(key=b"big", value=b"x" * (2 << 20)))
        for node in cluster.spec.nodes:
            with socket.create_connection(node.address, timeout=5) as sock:
                sock.sendall(bytes(range(256)) * 64)
                sock.settimeout(10)
                while sock.recv(4096):
                    pass  # the node hangs up on us
        assert client.get("keep").values == (b"safe",)
        assert not client.get("big").found
        assert all(cluster.pid(n.node_id) for n in cluster.spec.nodes)


def test_a_paused_node_is_routed_around_by_reads_and_writes(make_cluster: MakeCluster) -> None:
    """SIGSTOP keeps the node's connections open but answers nothing: without hedging, every read of a
    key whose first replica is that node waits for the full timeout and fails."""
    import signal

    cluster = make_cluster(3)
    ring = Ring({n.node_id: n.address for n in cluster.spec.nodes}, cluster.spec.settings.vnodes)
    keys = [k for k in (f"paused-{i}".encode() for i in range(400)) if ring.preference_list(k, 3)[0] == "n2"][:20]
    with Client(cluster.seeds, cluster.secret, timeout=5.0) as client:
        for key in keys:
            client.put(key, b"before")
        cluster.signal_node("n2", signal.SIGSTOP)
        try:
            assert all(client.get(key).values == (b"before",) for key in keys)
            failed = 0
            for key in keys:
                try:
                    client.put(key, b"after", context=client.get(key).context)
                except DynamrError:
                    failed += 1
            assert failed <= 1, f"{failed} writes waited for the paused node"
            assert sum(client.get(key).values == (b"after",) for key in keys) >= len(keys) - failed
        finally:
            cluster.signal_node("n2", signal.SIGCONT)
