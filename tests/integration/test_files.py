"""Files on the store with real node processes: failover, on-disk corruption, concurrency, memory, CLI."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

from dynamr.client import Client
from dynamr.files import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.store.client import AsyncClient
from dynamr.store.ring import Ring
from tests.integration.conftest import MakeCluster

MIB = 1 << 20


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _fs_session(cluster: LocalCluster, action, chunk_size: int = MIB):  # type: ignore[no-untyped-def]
    async with AsyncClient(cluster.seeds, cluster.secret, timeout=10) as client:
        return await action(FileSystem(client, chunk_size=chunk_size))


def test_read_completes_when_a_node_is_killed_during_get(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3)
    data = os.urandom(24 * MIB)
    run(_fs_session(cluster, lambda fs: fs.put_bytes(data, "/big/file.bin")))
    killed = threading.Event()

    def kill_after_first_chunk(_: int) -> None:
        if not killed.is_set():
            killed.set()
            cluster.kill_node("n2")

    async def get(fs: FileSystem) -> int:
        fs.parallel = 1  # one chunk at a time, so most of the read happens after the kill
        return await fs.get_file("/big/file.bin", tmp_path / "copy", progress=kill_after_first_chunk)

    assert run(_fs_session(cluster, get)) == len(data)
    assert killed.is_set() and cluster.pid("n2") is None
    assert (tmp_path / "copy").read_bytes() == data


def test_chunk_corrupted_on_disk_is_detected_served_from_another_replica_and_repaired(
        make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    data = os.urandom(3 * MIB + 5)
    run(_fs_session(cluster, lambda fs: fs.put_bytes(data, "/c.bin")))
    located = run(_fs_session(cluster, lambda fs: fs.locate("/c.bin")))
    victim = located[1]
    # corrupt the copy that reads try first: the chunk's first preferred node
    node_id = Ring([n.node_id for n in cluster.spec.nodes], cluster.spec.settings.vnodes).walk(victim.chunk_id)[0]
    chunk_file = cluster.data_dir(node_id) / "chunks" / victim.chunk_id.hex()[:2] / victim.chunk_id.hex()
    good = chunk_file.read_bytes()
    with open(chunk_file, "r+b") as f:  # flip one byte on the replica's disk
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0x55]))
    assert chunk_file.read_bytes() != good
    assert run(_fs_session(cluster, lambda fs: fs.read_bytes("/c.bin"))) == data
    assert chunk_file.read_bytes() == good, "the corrupted copy was not repaired"


def test_concurrent_creates_are_all_listed_and_removed_files_never_reappear(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with Client(cluster.seeds, cluster.secret) as client:
                client.files(chunk_size=MIB).put_bytes(f"content {i}".encode(), f"/shared/file-{i:02d}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Client(cluster.seeds, cluster.secret) as client:
        files = client.files()
        assert [e.name for e in files.ls("/shared")] == [f"file-{i:02d}" for i in range(12)]
        for i in range(0, 12, 2):
            files.rm(f"/shared/file-{i:02d}")
            assert f"file-{i:02d}" not in [e.name for e in files.ls("/shared")]
        assert [e.name for e in files.ls("/shared")] == [f"file-{i:02d}" for i in range(1, 12, 2)]
        assert files.read_bytes("/shared/file-03") == b"content 3"


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_put_and_get_of_a_large_file_keep_every_process_under_300_mb(make_cluster: MakeCluster,
                                                                    tmp_path: Path) -> None:
    """A 384 MiB file: a process that held it in memory would exceed the 300 MB bound."""
    cluster = make_cluster(3)
    source = tmp_path / "big.bin"
    with open(source, "wb") as out:
        for _ in range(384 // 8):
            out.write(os.urandom(8 * MIB))
    env = {**os.environ, "COLUMNS": "200"}
    cli = [sys.executable, "-m", "dynamr"]
    where = ["--dir", str(cluster.root)]
    subprocess.run([*cli, "fs", "put", str(source), "/big.bin", *where], check=True, capture_output=True, env=env)
    subprocess.run([*cli, "fs", "get", "/big.bin", str(tmp_path / "copy.bin"), *where], check=True,
                   capture_output=True, env=env)
    client_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    node_peaks = {n.node_id: _peak_rss_mib(cluster.pid(n.node_id) or 0) for n in cluster.spec.nodes}
    assert client_peak < 300, client_peak
    assert all(peak < 300 for peak in node_peaks.values()), node_peaks
    with open(source, "rb") as a, open(tmp_path / "copy.bin", "rb") as b:
        while True:
            x, y = a.read(8 * MIB), b.read(8 * MIB)
            assert x == y
            if not x:
                break


def test_fs_cli(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.txt").write_text("beta\n")
    (tmp_path / "empty").write_bytes(b"")

    def dynamr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "dynamr", *args, "--dir", str(cluster.root)],
                                capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=60)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    assert "stored 2 file(s)" in dynamr("fs", "put", str(tree), "/data/tree").stdout
    dynamr("fs", "put", str(tmp_path / "empty"), "/data/")
    assert dynamr("fs", "ls", "/data").stdout.split() == ["empty", "tree/"]
    assert dynamr("fs", "ls", "/data/tree").stdout.split() == ["a.txt", "sub/"]
    assert "beta" in dynamr("fs", "cat", "/data/tree/sub/b.txt").stdout
    assert "size:    6 bytes" in dynamr("fs", "stat", "/data/tree/a.txt").stdout
    long = dynamr("fs", "ls", "-l", "/data/tree").stdout
    assert "a.txt" in long and " 6 " in long
    dynamr("fs", "get", "/data/tree", str(tmp_path / "back"))
    assert (tmp_path / "back" / "sub" / "b.txt").read_text() == "beta\n"
    assert "n1" in dynamr("fs", "locate", "/data/tree/a.txt").stdout or "n2" in dynamr(
        "fs", "locate", "/data/tree/a.txt").stdout
    missing = dynamr("fs", "cat", "/data/nope", check=False)
    assert missing.returncode == 1 and "no such file: /data/nope" in missing.stderr
    is_dir = dynamr("fs", "cat", "/data/tree", check=False)
    assert is_dir.returncode == 1 and "is a directory" in is_dir.stderr
    assert dynamr("fs", "rm", "/data/tree", check=False).returncode == 1
    dynamr("fs", "rm", "-r", "/data/tree")
    assert dynamr("fs", "ls", "/data").stdout.split() == ["empty"]
    kept = dynamr("fs", "gc").stdout  # the removed chunks are younger than the default grace
    assert "freed 0 chunk" in kept and "chunks stored in the last 3600 s are kept" in kept
    assert "freed" in dynamr("fs", "gc", "--grace", "0").stdout




def test_round_trips_over_real_nodes_are_byte_identical(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    for size in (0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB + 7):
        data = os.urandom(size)

        async def round_trip(fs: FileSystem, data: bytes = data, size: int = size) -> bytes:
            await fs.put_bytes(data, f"/rt/blob-{size}")
            return await fs.read_bytes(f"/rt/blob-{size}")

        assert run(_fs_session(cluster, round_trip)) == data, size
