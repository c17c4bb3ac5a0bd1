"""Anti-entropy with real node processes: wiped disks come back whole, corrupt chunk copies are rebuilt."""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

from dynamr.files import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.rpc import messages as m
from dynamr.store import versions
from dynamr.store.client import AsyncClient, Client
from dynamr.store.ring import Ring
from tests.helpers import dynamr, wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.load import WriteLoad, statuses

MIB = 1 << 20
#: anti-entropy as fast as a test wants it (the default interval is 30 s)
QUICK = dict(anti_entropy_interval=0.3, anti_entropy_share=0.5)


def missing(client: Client, node_id: str, keys: list[str]) -> list[str]:
    """The keys of which one node's own replica holds nothing."""
    out = []
    for key in keys:
        reply = client.call_node(node_id, m.ReplicaRead(key=key.encode()))
        if not isinstance(reply, m.ReplicaState) or not reply.state:
            out.append(key)
    return out


def _put_file(cluster: LocalCluster, data: bytes, path: str) -> None:
    async def go() -> None:
        async with AsyncClient(cluster.seeds, cluster.secret, timeout=10) as client:
            await FileSystem(client, chunk_size=MIB).put_bytes(data, path)

    asyncio.run(go())


def _read_file(cluster: LocalCluster, path: str) -> bytes:
    async def go() -> bytes:
        async with AsyncClient(cluster.seeds, cluster.secret, timeout=10) as client:
            return await FileSystem(client, chunk_size=MIB).read_bytes(path)

    return asyncio.run(go())


def test_wiping_every_node_in_turn_loses_no_acknowledged_write(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3, **QUICK)
    data = random.Random(5).randbytes(3 * MIB + 123)
    _put_file(cluster, data, "/kept/file.bin")
    with Client(cluster.seeds, cluster.secret) as client:
        for i in range(1500):
            client.put(f"before-{i}", b"v")
        with WriteLoad(cluster) as writer:
            for victim in ("n1", "n2", "n3"):
                wait_until(lambda: len(writer.acked) > 100, 30, "writes going on")
                epoch = statuses(client)[victim].epoch
                cluster.kill_node(victim)
                shutil.rmtree(cluster.data_dir(victim))
                cluster.start([victim])
                written = [f"before-{i}" for i in range(0, 1500, 5)] + list(writer.acked)[::5]
                assert statuses(client)[victim].epoch != epoch
                # with N=3 on three nodes every node holds every key: the wiped one gets them all back
                wait_until(lambda v=victim, w=written: not missing(client, v, w), 60,
                           f"anti-entropy to refill {victim}", interval=0.5)
                wait_until(lambda v=victim: statuses(client)[v].chunks >= 4, 60, f"the chunks back on {victim}")
            acked = list(writer.acked)
        assert len(acked) > 300, f"the write load stalled ({len(writer.errors)} failed)"
        for node_id in ("n1", "n2", "n3"):  # every replica holds every acknowledged write
            assert missing(client, node_id, [f"before-{i}" for i in range(0, 1500, 3)] + acked[::3]) == []
        for key in acked:
            assert client.get(key).values == (writer.acked[key],), key
        repaired = statuses(client)
        assert all(st.exchanges > 0 for st in repaired.values())
        assert sum(st.keys_repaired for st in repaired.values()) >= 3 * 1500
    assert _read_file(cluster, "/kept/file.bin") == data


def test_a_corrupt_chunk_copy_is_found_by_the_scrubber_and_rebuilt(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3, scrub_interval=0.5, **QUICK)
    data = random.Random(6).randbytes(2 * MIB)
    _put_file(cluster, data, "/scrub/file.bin")
    chunk_files = sorted(p for p in (cluster.data_dir("n2") / "chunks").glob("*/*") if ".tmp-" not in p.name)
    assert chunk_files
    victim: Path = chunk_files[0]
    good = victim.read_bytes()
    victim.write_bytes(b"\0" * len(good))  # a flipped disk: same size, wrong bytes
    with Client(cluster.seeds, cluster.secret) as client:
        wait_until(lambda: statuses(client)["n2"].chunks_corrupt >= 1, 60, "the scrubber to find the bad copy")
        wait_until(lambda: victim.exists() and victim.read_bytes() == good, 60,
                   "anti-entropy to copy a good one back")
        # the exchange that copied it counts it when it ends
        wait_until(lambda: sum(st.chunks_repaired for st in statuses(client).values()) >= 1, 60,
                   "the repair to be counted")
    assert _read_file(cluster, "/scrub/file.bin") == data


def _actors(client: Client, node_id: str, key: str) -> set[str]:
    """Every actor named by the versions of a key on one node: their dots and their contexts."""
    reply = client.call_node(node_id, m.ReplicaRead(key=key.encode()))
    assert isinstance(reply, m.ReplicaState)
    state = versions.decode_state(reply.state)
    return {sib.actor for sib in state} | {actor for sib in state for actor in sib.past}


def test_contexts_do_not_grow_by_an_entry_per_wipe(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3, **QUICK)
    ring = Ring([n.node_id for n in cluster.spec.nodes], cluster.spec.settings.vnodes)
    key = next(k for k in (f"k{i}" for i in range(1000)) if ring.walk(k.encode())[0] == "n1")
    with Client(cluster.seeds, cluster.secret) as client:
        dead = []
        for round_ in range(3):  # n2 writes the key, is wiped, and the key is written again
            client.call_node("n2", m.Put(key=key.encode(), value=b"by n2", context=client.get(key).context))
            dead.append(f"n2@{statuses(client)['n2'].epoch}")
            cluster.kill_node("n2")
            shutil.rmtree(cluster.data_dir("n2"))
            cluster.start(["n2"])
            client.put(key, f"round {round_}".encode(), context=client.get(key).context)
        wait_until(lambda: all(not set(dead) & _actors(client, n, key) for n in ("n1", "n2", "n3")), 120,
                   "the dead epochs to leave the key's contexts")
        assert client.get(key).values == (b"round 2",)
        assert all(_actors(client, n, key) for n in ("n1", "n2", "n3"))


def test_repair_on_demand_refills_a_wiped_node_with_periodic_anti_entropy_off(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3, coordinator=False, anti_entropy_interval=0.0)  # (every key of the store counted)
    keys = [f"r-{i}" for i in range(400)]
    with Client(cluster.seeds, cluster.secret) as client:
        for key in keys:
            client.put(key, b"v")
        # a write to n2 that was slow to land leaves a hint, handed to the wiped n2 when it is back: wait
        # until every write is on n2 and no node holds a hint, so the wipe is the only thing n2 lost
        wait_until(lambda: not missing(client, "n2", keys) and not any(st.hints for st in statuses(client).values()),
                   60, "every write on n2 and no hint left")
        cluster.kill_node("n2")
        shutil.rmtree(cluster.data_dir("n2"))
        cluster.start(["n2"])
        assert len(missing(client, "n2", keys)) == len(keys)
        out = dynamr("cluster", "repair", "--node", "n2", "--dir", str(cluster.root), cwd=cluster.root).stdout
        assert "n2: exchanged with n1, n3; repaired 400 key(s)" in out, out
        assert missing(client, "n2", keys) == []
        assert statuses(client)["n2"].exchanges == 2
    unknown = dynamr("cluster", "repair", "--node", "n9", "--dir", str(cluster.root), cwd=cluster.root, check=False)
    assert unknown.returncode == 1 and "has no node 'n9'" in unknown.stdout + unknown.stderr
