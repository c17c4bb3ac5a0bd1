"""YCSB-style store benchmark: workloads A (50/50 read/update), B (95/5) and C (read only).

Starts a local cluster of real node processes (default 3 nodes, N=3 R=2 W=2), loads ``--records`` keys
with 1 KiB values, then runs each workload for ``--seconds`` with ``--clients`` client processes, each
keeping ``--concurrency`` requests in flight. Keys follow YCSB's scrambled zipfian distribution
(constant 0.99). An update writes with the causal context the client last saw for the key, as an
application doing read-modify-write would. Prints ops/s and p50/p99 latency per workload.

    python bench/kv_bench.py                     # the recorded configuration
    python bench/kv_bench.py --seconds 5 --workloads B
    python bench/kv_bench.py --workloads B --pause n2   # then again with node n2 stopped (SIGSTOP)

With ``--pause NODE`` each workload runs a second time with that node stopped by SIGSTOP (it keeps its
connections but answers nothing), and the ratio to the undisturbed run is printed.

With ``--anti-entropy`` (periodic anti-entropy is then off) each workload runs a second time while
anti-entropy exchanges run back to back, one at a time, n1 with n2, n2 with n3, n3 with n1 and so on, and
the ratio to the undisturbed run is printed with the number of exchanges done meanwhile.

    python bench/kv_bench.py --workloads B --records 100000 --anti-entropy
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import multiprocessing as mp
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from dynamr.config import Quorum, StoreSettings
from dynamr.daemons import install_event_loop_policy
from dynamr.localcluster import LocalCluster
from dynamr.rpc import messages as m
from dynamr.store.client import AsyncClient, Client
from dynamr.store.ring import key_hash

WORKLOADS = {"A": 0.50, "B": 0.95, "C": 1.00}  # read fraction


class Zipfian:
    """YCSB's zipfian over [0, n), scrambled by a hash so hot keys spread over the ring."""

    def __init__(self, n: int, theta: float = 0.99, seed: int = 1) -> None:
        weights = [1.0 / (i + 1) ** theta for i in range(n)]
        total = sum(weights)
        acc = 0.0
        self._cdf = []
        for w in weights:
            acc += w / total
            self._cdf.append(acc)
        self._n = n
        self._rng = random.Random(seed)

    def next(self) -> int:
        rank = min(bisect.bisect_left(self._cdf, self._rng.random()), self._n - 1)
        return key_hash(rank.to_bytes(8, "big")) % self._n


def key_of(i: int) -> bytes:
    return b"user%010d" % i


async def _load(seeds: list[tuple[str, int]], secret: bytes, start: int, stop: int, value: bytes) -> None:
    async with AsyncClient(seeds, secret) as client:
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await client.put(key_of(i), value)

        await asyncio.gather(*(one(i) for i in range(start, stop)))


async def _run(seeds: list[tuple[str, int]], secret: bytes, records: int, read_fraction: float, seconds: float,
               concurrency: int, seed: int) -> tuple[int, list[float], int]:
    zipf = Zipfian(records, seed=seed)
    rng = random.Random(seed)
    value = os.urandom(1024)
    contexts: dict[bytes, bytes] = {}
    latencies: list[float] = []
    errors = 0
    async with AsyncClient(seeds, secret) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                key = key_of(zipf.next())
                started = time.perf_counter()
                try:
                    if rng.random() < read_fraction:
                        contexts[key] = (await client.get(key)).context
                    else:
                        contexts[key] = await client.put(key, value, context=contexts.get(key, b""))
                except Exception:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies, errors


def _client_process(args: tuple[list[tuple[str, int]], bytes, int, float, float, int, int],
                    out: mp.Queue) -> None:  # type: ignore[type-arg]
    install_event_loop_policy()
    out.put(asyncio.run(_run(*args)))


def run_workload(cluster: LocalCluster, name: str, records: int, seconds: float, clients: int,
                 concurrency: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_client_process,
                         args=((cluster.seeds, cluster.secret, records, WORKLOADS[name], seconds, concurrency,
                                1000 + i), out)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    ops = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    errors = sum(r[2] for r in results)
    return {"ops_per_s": ops / seconds, "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)], "mean_ms": 1000 * statistics.fmean(lat),
            "errors": errors, "ops": ops}


class Exchanges:
    """Anti-entropy exchanges back to back, one at a time, between the cluster's nodes in turn."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.done = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Exchanges:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        nodes = [n.node_id for n in self.cluster.spec.nodes]
        spent = 0.0
        with Client(self.cluster.seeds, self.cluster.secret, timeout=600.0) as client:
            for i in itertools.count():
                if self._stop.is_set():
                    break
                node, peer = nodes[i % len(nodes)], nodes[(i + 1) % len(nodes)]
                started = time.perf_counter()
                client.call_node(node, m.RunExchange(peer=peer), timeout=600.0)
                spent += time.perf_counter() - started
                self.done += 1
        self.seconds = spent / max(1, self.done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per client process")
    parser.add_argument("--workloads", default="ABC")
    parser.add_argument("--fsync", default="always", choices=["always", "periodic", "never"])
    parser.add_argument("--pause", default="", help="run each workload again with this node stopped (SIGSTOP)")
    parser.add_argument("--anti-entropy", action="store_true",
                        help="run each workload again during back-to-back anti-entropy exchanges")
    args = parser.parse_args()

    settings = StoreSettings(quorum=Quorum(n=3, r=2, w=2), fsync=args.fsync,
                             anti_entropy_interval=0.0 if args.anti_entropy else 30.0)
    with tempfile.TemporaryDirectory(prefix="dynamr-bench-") as tmp:
        cluster = LocalCluster.create(Path(tmp), args.nodes, settings, ephemeral=True)
        cluster.start()
        try:
            started = time.perf_counter()
            install_event_loop_policy()
            asyncio.run(_load(cluster.seeds, cluster.secret, 0, args.records, os.urandom(1024)))
            load_s = time.perf_counter() - started
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
                  f"{platform.system()} {platform.release()}")
            print(f"cluster: {args.nodes} nodes, N=3 R=2 W=2, fsync={args.fsync}; records: {args.records} x 1 KiB; "
                  f"clients: {args.clients} x {args.concurrency} in flight")
            print(f"load: {args.records / load_s:,.0f} inserts/s")
            print(f"{'workload':<10}{'ops/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'errors':>8}")
            undisturbed = {}
            for name in args.workloads:
                r = run_workload(cluster, name, args.records, args.seconds, args.clients, args.concurrency)
                undisturbed[name] = r
                print(f"{name:<10}{r['ops_per_s']:>10,.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
                      f"{r['mean_ms']:>10.2f}{r['errors']:>8}")
            if args.pause:
                cluster.signal_node(args.pause, signal.SIGSTOP)
                try:
                    for name in args.workloads:
                        r = run_workload(cluster, name, args.records, args.seconds, args.clients,
                                         args.concurrency)
                        ratio = r["ops_per_s"] / undisturbed[name]["ops_per_s"]
                        print(f"{name + ' (' + args.pause + ' paused)':<10}{r['ops_per_s']:>10,.0f}"
                              f"{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['mean_ms']:>10.2f}{r['errors']:>8}"
                              f"   {ratio:.2f}x of undisturbed")
                finally:
                    cluster.signal_node(args.pause, signal.SIGCONT)
            if args.anti_entropy:
                for name in args.workloads:
                    with Exchanges(cluster) as exchanges:
                        r = run_workload(cluster, name, args.records, args.seconds, args.clients, args.concurrency)
                    # undisturbed again after, so a host that speeds up or slows down does not bias the ratio
                    again = run_workload(cluster, name, args.records, args.seconds, args.clients, args.concurrency)
                    print(f"{name + ' (again)':<10}{again['ops_per_s']:>10,.0f}{again['p50_ms']:>10.2f}"
                          f"{again['p99_ms']:>10.2f}{again['mean_ms']:>10.2f}{again['errors']:>8}")
                    base = (undisturbed[name]["ops_per_s"] + again["ops_per_s"]) / 2
                    print(f"{name + ' (exchanging)':<10}{r['ops_per_s']:>10,.0f}{r['p50_ms']:>10.2f}"
                          f"{r['p99_ms']:>10.2f}{r['mean_ms']:>10.2f}{r['errors']:>8}   {r['ops_per_s'] / base:.2f}x "
                          f"of undisturbed (before and after), {exchanges.done} exchange(s) of "
                          f"{exchanges.seconds:.1f} s")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
