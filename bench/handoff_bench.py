"""Ownership handoff throughput: data moving to a node that joins a running cluster (issue 14).

Starts a local cluster of three node processes (N=3), writes ``--mib`` MiB of data, half as keys of
``--value-kib`` KiB and half as a file (its chunks), then adds a fourth node, stages its join and commits.
The clock runs from the commit until the transition has finished (every node switched). The bytes that
count are those the new node owns afterwards, computed from the ring for every key and chunk written.
Afterwards a sample of keys and the file are read back and checked.

    python bench/handoff_bench.py               # the recorded configuration (1 GiB)
    python bench/handoff_bench.py --mib 256
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from dynamr.config import Quorum, StoreSettings
from dynamr.daemons import install_event_loop_policy
from dynamr.files import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.rpc import messages as m
from dynamr.store import membership as ms
from dynamr.store.chunks import chunk_id
from dynamr.store.client import AsyncClient
from dynamr.store.ring import Ring

CHUNK = 4 << 20


async def load(cluster: LocalCluster, keys: int, value_kib: int, file_bytes: bytes) -> None:
    async with AsyncClient(cluster.seeds, cluster.secret, timeout=60) as client:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await client.put(f"key-{i:08d}", random.Random(i).randbytes(value_kib << 10))

        await asyncio.gather(*(one(i) for i in range(keys)))
        await FileSystem(client, chunk_size=CHUNK).put_bytes(file_bytes, "/bench/big.bin")


async def state_of(cluster: LocalCluster, node: str) -> ms.ClusterState:
    async with AsyncClient([cluster.address(node)], cluster.secret, timeout=10) as client:
        reply = await client.call_node(cluster.address(node), m.ClusterAdmin(action="show"))
    assert isinstance(reply, m.ClusterStateReply)
    return ms.from_record(reply.state)


async def admin(cluster: LocalCluster, action: str, node_id: str = "") -> None:
    async with AsyncClient(cluster.seeds, cluster.secret, timeout=30) as client:
        await client.call_node(cluster.seeds[0], m.ClusterAdmin(action=action, node_id=node_id), timeout=30)


async def check(cluster: LocalCluster, keys: int, value_kib: int, file_bytes: bytes) -> None:
    async with AsyncClient([cluster.address("n4")], cluster.secret, timeout=60) as client:
        for i in random.Random(1).sample(range(keys), min(keys, 200)):
            got = (await client.get(f"key-{i:08d}")).values
            assert got == (random.Random(i).randbytes(value_kib << 10),), f"key-{i:08d} wrong after the join"
        assert await FileSystem(client, chunk_size=CHUNK).read_bytes("/bench/big.bin") == file_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="data written before the join, MiB")
    parser.add_argument("--value-kib", type=int, default=64, help="size of each key's value, KiB")
    parser.add_argument("--fsync", default="always", choices=["always", "periodic", "never"])
    args = parser.parse_args()
    install_event_loop_policy()
    half = (args.mib << 20) // 2
    keys = half // (args.value_kib << 10)
    file_bytes = os.urandom(half)
    settings = StoreSettings(quorum=Quorum(n=3, r=2, w=2), fsync=args.fsync, anti_entropy_interval=0.0,
                             heartbeat_interval=0.2, failure_timeout=2.0)
    with tempfile.TemporaryDirectory(prefix="dynamr-handoff-") as tmp:
        cluster = LocalCluster.create(Path(tmp), 3, settings, ephemeral=True, coordinator=False)
        cluster.start()
        try:
            started = time.perf_counter()
            asyncio.run(load(cluster, keys, args.value_kib, file_bytes))
            load_s = time.perf_counter() - started
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
                  f"{platform.system()} {platform.release()}")
            print(f"loaded {args.mib} MiB ({keys} keys of {args.value_kib} KiB and a file of {half >> 20} MiB) "
                  f"in {load_s:.1f} s; fsync={args.fsync}")
            node = cluster.add_node()
            asyncio.run(admin(cluster, "join", node))
            started = time.perf_counter()
            asyncio.run(admin(cluster, "commit"))
            while True:
                state = asyncio.run(state_of(cluster, node))
                if not state.moving and node in state.owners:
                    break
                time.sleep(0.05)
            seconds = time.perf_counter() - started
            ring = Ring(state.owners, settings.vnodes)
            owned = sum(args.value_kib << 10 for i in range(keys)
                        if node in ring.preference_list(f"key-{i:08d}".encode(), 3))
            ids = [chunk_id(file_bytes[i:i + CHUNK]) for i in range(0, len(file_bytes), CHUNK)]
            owned += sum(len(file_bytes[i * CHUNK:(i + 1) * CHUNK]) for i, cid in enumerate(ids)
                         if node in ring.preference_list(cid, 3))
            print(f"join of {node}: {owned / 1e6:.0f} MB now owned by it moved in {seconds:.1f} s: "
                  f"{owned / 1e6 / seconds:.1f} MB/s")
            asyncio.run(check(cluster, keys, args.value_kib, file_bytes))
            print("every sampled key and the file read back equal")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
