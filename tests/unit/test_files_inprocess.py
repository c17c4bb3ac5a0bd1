"""The file layer over in-process nodes: round trips, ranges, listings, removal, garbage collection."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynamr.errors import BadRequestError, DynamrError, NotFoundError, PathIsDirectoryError, PathNotDirectoryError
from dynamr.files import FileSystem
from dynamr.store.blobs import MemoryBlobStore
from tests.helpers import async_wait_until
from tests.inprocess import SETTINGS, Cluster

CHUNK = 1024
FS_SETTINGS = SETTINGS.replace(max_key_bytes=400, max_value_bytes=64 * 1024)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster(3, FS_SETTINGS)
    yield c
    await c.stop()


@pytest.fixture
def fs(cluster: Cluster) -> FileSystem:
    return FileSystem(cluster.client, chunk_size=CHUNK)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 7 * CHUNK + 123])
async def test_round_trips_are_byte_identical(fs: FileSystem, size: int, tmp_path: Path) -> None:
    data = os.urandom(size)
    stat = await fs.put_bytes(data, "/data/blob.bin")
    assert stat.size == size and stat.chunks == -(-size // CHUNK)
    assert await fs.read_bytes("/data/blob.bin") == data
    await fs.get_file("/data/blob.bin", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


async def test_byte_ranges(fs: FileSystem) -> None:
    data = os.urandom(5 * CHUNK)
    await fs.put_bytes(data, "/r")
    for offset, length in [(0, 10), (CHUNK - 3, 7), (2 * CHUNK, CHUNK), (4 * CHUNK + 5, 10_000), (0, -1)]:
        expected = data[offset:] if length < 0 else data[offset:offset + length]
        assert await fs.read_bytes("/r", offset, length) == expected


async def test_listing_stat_and_errors(fs: FileSystem) -> None:
    await fs.put_bytes(b"hello", "/docs/a.txt")
    await fs.put_bytes(b"world!", "/docs/sub/b.txt")
    assert [(e.name, e.kind) for e in await fs.ls("/")] == [("docs", "directory")]
    assert [(e.name, e.kind, e.size) for e in await fs.ls("/docs", long=True)] == [
        ("a.txt", "file", 5), ("sub", "directory", 0)]
    stat = await fs.stat("/docs/sub/b.txt")
    assert (stat.kind, stat.size) == ("file", 6)
    assert (await fs.stat("/docs")).kind == "directory"
    with pytest.raises(NotFoundError, match="no such file: /docs/missing"):
        await fs.read_bytes("/docs/missing")
    with pytest.raises(PathIsDirectoryError, match="is a directory"):
        await fs.read_bytes("/docs")
    with pytest.raises(PathIsDirectoryError):
        await fs.put_bytes(b"x", "/docs")
    with pytest.raises(PathNotDirectoryError, match="is a file"):
        await fs.put_bytes(b"x", "/docs/a.txt/inside")


async def test_overwrite_replaces_content(fs: FileSystem) -> None:
    await fs.put_bytes(b"first version", "/f")
    await fs.put_bytes(b"second", "/f")
    assert await fs.read_bytes("/f") == b"second"
    assert [e.name for e in await fs.ls("/")] == ["f"]


async def test_concurrent_creates_in_one_directory_are_all_listed(cluster: Cluster) -> None:
    writers = [FileSystem(cluster.client, chunk_size=CHUNK) for _ in range(8)]
    await asyncio.gather(*(w.put_bytes(f"file {i}".encode(), f"/shared/f{i}") for i, w in enumerate(writers)))
    names = [e.name for e in await FileSystem(cluster.client).ls("/shared")]
    assert names == [f"f{i}" for i in range(8)]


async def test_rm_then_ls_never_shows_the_file_and_gc_frees_its_chunks(fs: FileSystem, cluster: Cluster) -> None:
    keep = os.urandom(3 * CHUNK)
    await fs.put_bytes(keep, "/d/keep")
    await fs.put_bytes(os.urandom(4 * CHUNK), "/d/drop")
    chunks_before = sum(n.blobs.count() for n in cluster.nodes.values())
    assert chunks_before == 3 * 7
    assert await fs.rm("/d/drop") == 1
    assert [e.name for e in await fs.ls("/d")] == ["keep"]
    with pytest.raises(NotFoundError):
        await fs.stat("/d/drop")
    assert await fs.collect_garbage(grace=0) == 3 * 4
    assert sum(n.blobs.count() for n in cluster.nodes.values()) == 3 * 3
    assert await fs.read_bytes("/d/keep") == keep
    with pytest.raises(PathIsDirectoryError, match="rm -r"):
        await fs.rm("/d")
    assert await fs.rm("/d", recursive=True) == 1
    assert await fs.ls("/") == []


async def test_gc_grace_protects_recent_chunks(fs: FileSystem) -> None:
    await fs.put_bytes(os.urandom(2 * CHUNK), "/x")
    await fs.rm("/x")
    assert await fs.collect_garbage(grace=3600) == 0


def _chunks(cluster: Cluster) -> int:
    return sum(n.blobs.count() for n in cluster.nodes.values())


async def _pieces(data: bytes, gate: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        if gate is not None and start == 2 * CHUNK:
            await gate.wait()
        yield data[start:start + CHUNK]


async def test_objects_are_garbage_collection_roots_until_deleted(fs: FileSystem, cluster: Cluster) -> None:
    data = os.urandom(3 * CHUNK)
    await fs.put_object(b"o:job/out/a1/0", _pieces(data))
    assert await fs.collect_garbage(grace=0) == 0, "an object outside the tree is still referenced"
    assert b"".join([p async for p in fs.read_object(b"o:job/out/a1/0")]) == data
    assert await fs.delete_object(b"o:job/out/a1/0")
    assert await fs.collect_garbage(grace=0) == 3 * 3 and _chunks(cluster) == 0


async def test_a_publish_or_put_cut_off_before_its_directory_entry_is_listed_once_done_again(
        fs: FileSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest is written first, then the name added to its directory: a writer cut off in between
    leaves a file that is found but not listed. Doing the same write again lists it, whatever it finds."""
    await fs.put_object(b"o:job/out/a1/0", _pieces(b"part"))
    add_entry = fs._add_entry

    async def cut_off(dir_path: str, name: str, kind: str) -> None:
        if name.startswith("part-") or name == "_SUCCESS":
            raise DynamrError("the node was killed")
        await add_entry(dir_path, name, kind)

    monkeypatch.setattr(fs, "_add_entry", cut_off)
    with pytest.raises(DynamrError):
        await fs.publish_object(b"o:job/out/a1/0", "/out/part-00000")
    with pytest.raises(DynamrError):
        await fs.put_bytes(b"", "/out/_SUCCESS")
    assert await fs.exists("/out/part-00000") and await fs.exists("/out/_SUCCESS")
    assert await fs.ls("/out") == []
    monkeypatch.setattr(fs, "_add_entry", add_entry)
    await fs.publish_object(b"o:job/out/a1/0", "/out/part-00000")  # (it finds the same manifest in place)
    await fs.put_bytes(b"", "/out/_SUCCESS")
    assert [e.name for e in await fs.ls("/out")] == ["_SUCCESS", "part-00000"]
    assert await fs.read_bytes("/out/part-00000") == b"part"


async def test_an_object_key_outside_the_object_prefix_is_refused(fs: FileSystem) -> None:
    with pytest.raises(BadRequestError, match="must start with"):
        await fs.put_object(b"mr:job/out", _pieces(b"x"))


@pytest.mark.parametrize("kind", ["object", "file"])
async def test_an_upload_in_progress_survives_garbage_collection_with_no_grace(fs: FileSystem, cluster: Cluster,
                                                                               kind: str) -> None:
    """Chunks already written but not yet named by a manifest are protected by the writer's session."""
    data = os.urandom(4 * CHUNK)
    gate = asyncio.Event()
    if kind == "object":
        writer = asyncio.create_task(fs.put_object(b"o:slow", _pieces(data, gate)))
    else:
        writer = asyncio.create_task(fs.put_stream(_BlockingStream(data, gate), "/slow"))

    async def two_written() -> bool:
        return _chunks(cluster) >= 3 * 2
    await async_wait_until(two_written, 10, "the first chunks to be stored")
    assert await fs.collect_garbage(grace=0) == 0
    gate.set()
    await writer
    read = (b"".join([p async for p in fs.read_object(b"o:slow")]) if kind == "object"
            else await fs.read_bytes("/slow"))
    assert read == data
    assert await fs.collect_garbage(grace=0) == 0


async def test_the_session_of_a_writer_that_died_expires_and_is_removed(fs: FileSystem, cluster: Cluster) -> None:
    from dynamr.files import uploads

    await fs.put_bytes(os.urandom(CHUNK), "/gone")
    await fs.rm("/gone")
    long_ago = time.time() - uploads.LEASE - 5
    await cluster.client.put(b"u:dead-writer", uploads.Session(long_ago, long_ago).encode())
    assert await fs.collect_garbage(grace=0) == 3, "an expired session protects nothing"
    assert not (await cluster.client.get(b"u:dead-writer")).values, "and is removed"
    now = time.time()
    await cluster.client.put(b"u:live-writer", uploads.Session(now - 100, now).encode())
    await fs.put_bytes(os.urandom(CHUNK), "/gone2")
    await fs.rm("/gone2")
    assert await fs.collect_garbage(grace=0) == 0, "a live session protects chunks stored after it began"


class _BlockingStream(io.RawIOBase):
    """A binary stream that blocks (in the reader's thread) after two chunks until ``gate`` is set."""

    def __init__(self, data: bytes, gate: asyncio.Event) -> None:
        self._data, self._gate, self._pos = data, gate, 0
        self._loop = asyncio.get_running_loop()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._pos == 2 * CHUNK:
            asyncio.run_coroutine_threadsafe(self._gate.wait(), self._loop).result()
        piece = self._data[self._pos:self._pos + size]
        self._pos += len(piece)
        return piece


async def test_locate_names_the_nodes_holding_each_chunk(fs: FileSystem, cluster: Cluster) -> None:
    await fs.put_bytes(os.urandom(3 * CHUNK), "/loc")
    located = await fs.locate("/loc", CHUNK + 10, CHUNK)
    assert [(loc.index, loc.file_offset, loc.length) for loc in located] == [
        (1, CHUNK + 10, CHUNK - 10), (2, 2 * CHUNK, 10)]
    for loc in located:
        assert loc.nodes == tuple(sorted(cluster.nodes["n1"].ring.preference_list(loc.chunk_id, 3)))


async def test_read_survives_a_missing_and_a_corrupt_replica_and_repairs_them(fs: FileSystem,
                                                                             cluster: Cluster) -> None:
    data = os.urandom(CHUNK)
    await fs.put_bytes(data, "/c")
    (cid, _), = (await fs._require_file("/c")).chunks
    first, second, _ = cluster.nodes["n1"].ring.preference_list(cid, 3)
    cluster.nodes[first].blobs.delete(cid)
    blobs = cluster.nodes[second].blobs
    assert isinstance(blobs, MemoryBlobStore)
    blobs.corrupt(cid)
    assert await fs.read_bytes("/c") == data
    for node_id in (first, second):  # both bad copies were rewritten from the good one
        assert cluster.nodes[node_id].blobs.get(cid) == data


async def test_chunk_written_while_an_owner_is_down_is_handed_off_then_dropped_by_the_fallback() -> None:
    cluster = Cluster(4, FS_SETTINGS)
    try:
        data = os.urandom(CHUNK)
        from dynamr.store.chunks import chunk_id

        cid = chunk_id(data)
        ring = cluster.nodes["n1"].ring
        owner, fallback = ring.preference_list(cid, 3)[1], ring.walk(cid)[3]
        cluster.set_down(owner)
        await cluster.client.put_chunk(data, w=3)
        assert cluster.nodes[fallback].blobs.get(cid) == data
        assert cluster.nodes[owner].blobs.get(cid) is None
        cluster.set_down(owner, False)

        async def handed_off() -> bool:
            return (cluster.nodes[owner].blobs.get(cid) == data
                    and cluster.nodes[fallback].blobs.get(cid) is None
                    and not list(cluster.nodes[fallback].replica.engine.scan("chunk_hints")))

        await async_wait_until(handed_off, 5, "chunk handoff")
    finally:
        await cluster.stop()


async def test_a_chunk_lost_everywhere_names_the_file_and_byte_range(fs: FileSystem, cluster: Cluster) -> None:
    from dynamr.errors import DataLostError

    data = os.urandom(3 * CHUNK)
    await fs.put_bytes(data, "/lost")
    cid = (await fs._require_file("/lost")).chunks[1][0]
    for node in cluster.nodes.values():
        node.blobs.delete(cid)
    with pytest.raises(DataLostError, match=r"/lost: bytes 1024-2047 \(chunk 1\) are lost.*missing"):
        await fs.read_bytes("/lost")
    assert await fs.read_bytes("/lost", 0, CHUNK) == data[:CHUNK]  # the rest is still readable


def test_a_failed_chunk_write_is_a_clear_storage_error(tmp_path: Path) -> None:
    from dynamr.errors import StorageError
    from dynamr.store.blobs import DirectoryBlobStore
    from dynamr.store.chunks import chunk_id

    store = DirectoryBlobStore(tmp_path / "chunks")
    data = b"payload"
    cid = chunk_id(data)
    (tmp_path / "chunks" / cid.hex()[:2]).write_text("a file where the bucket directory should be")
    with pytest.raises(StorageError, match="cannot store chunk"):
        store.put(cid, data)
    other = chunk_id(b"other")
    store.put(other, b"other")
    assert store.get(other) == b"other"
    assert [c for c, _ in store.scan()] == [other]


async def test_one_node_collects_garbage_automatically() -> None:
    from dynamr.files.gc import collect_once, is_collector, run_collector

    cluster = Cluster(3, FS_SETTINGS.replace(gc_interval=0.05, gc_grace=0))
    tasks = [asyncio.create_task(run_collector(node)) for node in cluster.nodes.values()]
    try:
        assert [n for n, node in cluster.nodes.items() if is_collector(node)] == ["n1"]
        fs = FileSystem(cluster.client, chunk_size=CHUNK)
        await fs.put_bytes(os.urandom(2 * CHUNK), "/auto")
        await fs.rm("/auto")

        async def freed() -> bool:
            return all(node.blobs.count() == 0 for node in cluster.nodes.values())

        await async_wait_until(freed, 5, "automatic garbage collection")
        assert await collect_once(cluster.nodes["n2"]) == 0
    finally:
        for task in tasks:
            task.cancel()
        await cluster.stop()


async def test_put_tree_refuses_what_is_not_a_regular_file(fs: FileSystem, tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a").write_text("a")
    (tmp_path / "t" / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(BadRequestError, match="dangling is not a regular file"):
        await fs.put_tree(tmp_path / "t", "/t")


async def test_put_tree_of_many_small_files_lists_each_once_in_few_directory_writes(
        fs: FileSystem, cluster: Cluster, tmp_path: Path) -> None:
    from dynamr.files import client as files_client

    tree = tmp_path / "many"
    for i in range(files_client.TREE_BATCH + 40):  # two batches
        folder = tree / f"d{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:04d}.txt").write_bytes(os.urandom(i % (3 * CHUNK)))
    big = tree / "d0" / "big.bin"
    big.write_bytes(os.urandom(5 * CHUNK + 7))  # larger than a chunk: written on its own
    puts = 0
    put = cluster.client.put

    async def counting(key: bytes, *args: object, **kwargs: object) -> object:
        nonlocal puts
        puts += key.startswith(b"d:")
        return await put(key, *args, **kwargs)  # type: ignore[arg-type]

    cluster.client.put = counting  # type: ignore[method-assign]
    stats = await fs.put_tree(tree, "/many")
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    assert [s.path for s in stats] == [f"/many/{p.relative_to(tree).as_posix()}" for p in files]
    assert puts <= 2 * 3 + 4, f"{puts} directory writes for {len(files)} files in 3 directories"
    for p in files:
        assert await fs.read_bytes(f"/many/{p.relative_to(tree).as_posix()}") == p.read_bytes()
    listed = [e.name for d in ("d0", "d1", "d2") for e in await fs.ls(f"/many/{d}")]
    assert sorted(listed) == sorted(p.name for p in files)


async def test_put_tree_onto_a_directory_of_the_same_name_is_refused_before_anything_is_written(
        fs: FileSystem, tmp_path: Path) -> None:
    await fs.put_bytes(b"x", "/t/a/inner.txt")  # /t/a is a directory
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a").write_text("a file where a directory is")
    (tmp_path / "t" / "b").write_text("b")
    with pytest.raises(PathIsDirectoryError, match="/t/a is a directory"):
        await fs.put_tree(tmp_path / "t", "/t")
    assert not await fs.exists("/t/b")
