"""File layer throughput: put and get of one large file on a local cluster (default 1 GiB, 3 nodes, N=3).

Writes a file of random bytes to a temporary directory, uploads it with ``FileSystem.put_file``, downloads
it with ``get_file``, checks the copy is identical, and prints MB/s both ways with the peak RSS of the
client and of every node process (their high-water mark, from /proc).

    python bench/fs_bench.py                 # the recorded configuration (1 GiB)
    python bench/fs_bench.py --mib 256
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

from dynamr.config import Quorum, StoreSettings
from dynamr.daemons import install_event_loop_policy
from dynamr.files import FileSystem
from dynamr.files.manifest import DEFAULT_CHUNK_SIZE
from dynamr.localcluster import LocalCluster
from dynamr.store.client import AsyncClient


def memory_mib(pid: int) -> dict[str, float]:
    """RssAnon (the process's own memory) and RssFile (mapped file pages, e.g. LMDB's map) in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class PeakSampler:
    """Samples RssAnon and RssFile of some processes every 20 ms and keeps the peaks."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak: dict[str, dict[str, float]] = {name: {} for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for name, pid in self.pids.items():
                try:
                    now = memory_mib(pid)
                except OSError:
                    continue
                for key, value in now.items():
                    self.peak[name][key] = max(self.peak[name].get(key, 0.0), value)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_file(path: Path, size: int) -> str:
    digest = hashlib.blake2b()
    block = 8 << 20
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            data = os.urandom(min(block, remaining))
            digest.update(data)
            out.write(data)
            remaining -= len(data)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    digest = hashlib.blake2b()
    with open(path, "rb") as src:
        while data := src.read(8 << 20):
            digest.update(data)
    return digest.hexdigest()


async def transfer(cluster: LocalCluster, source: Path, target: Path, chunk_size: int,
                   parallel: int) -> tuple[float, float]:
    async with AsyncClient(cluster.seeds, cluster.secret, timeout=60) as client:
        fs = FileSystem(client, chunk_size=chunk_size, parallel=parallel)
        started = time.perf_counter()
        await fs.put_file(source, "/bench/data.bin")
        put_s = time.perf_counter() - started
        started = time.perf_counter()
        await fs.get_file("/bench/data.bin", target)
        get_s = time.perf_counter() - started
    return put_s, get_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--parallel", type=int, default=4, help="chunks in flight")
    parser.add_argument("--fsync", default="always", choices=["always", "periodic", "never"])
    args = parser.parse_args()
    size = args.mib << 20
    with tempfile.TemporaryDirectory(prefix="dynamr-fsbench-") as tmp:
        root = Path(tmp)
        source, target = root / "source.bin", root / "copy.bin"
        expected = make_file(source, size)
        settings = StoreSettings(quorum=Quorum(n=3, r=2, w=2), fsync=args.fsync)
        cluster = LocalCluster.create(root / "cluster", args.nodes, settings, ephemeral=True)
        cluster.start()
        try:
            install_event_loop_policy()
            pids = {"client": os.getpid(), **{n.node_id: cluster.pid(n.node_id) or 0 for n in cluster.spec.nodes}}
            with PeakSampler(pids) as sampler:
                put_s, get_s = asyncio.run(transfer(cluster, source, target, args.chunk_size, args.parallel))
        finally:
            cluster.stop()
        identical = file_digest(target) == expected
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{platform.system()} {platform.release()}")
    print(f"cluster: {args.nodes} nodes, N=3 W=2, fsync={args.fsync}; file {args.mib} MiB, "
          f"chunks of {args.chunk_size >> 20} MiB, {args.parallel} in flight")
    print(f"put: {size / put_s / 1e6:8.1f} MB/s  ({put_s:.2f} s)")
    print(f"get: {size / get_s / 1e6:8.1f} MB/s  ({get_s:.2f} s)  identical: {identical}")
    print("peak memory, MiB (own = RssAnon; mapped = RssFile, LMDB's page-cache map; HWM = VmHWM):")
    for name, peak in sampler.peak.items():
        print(f"  {name:<7} own {peak.get('RssAnon', 0):6.0f}   mapped {peak.get('RssFile', 0):6.0f}   "
              f"HWM {peak.get('VmHWM', 0):6.0f}")
    if not identical:
        raise SystemExit("the downloaded copy differs from the original")


if __name__ == "__main__":
    main()
