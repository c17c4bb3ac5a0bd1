"""The file system on the store: put, get, read ranges, list, stat, remove, locate, collect garbage.

A file is a manifest at key ``f:<path>`` plus immutable chunks; a directory is an entry set at ``d:<path>``
(see :mod:`dynamr.files.directory`). Uploads send chunks first, with a few in flight, then write the
manifest, then add the name to its directory, so a listed file is always complete (a writer cut off
between the last two leaves a complete file that is found but not listed; the same put or publish done
again lists it: both always add the entry). Downloads fetch chunks in order with a few prefetched, so
memory stays bounded by (prefetch x chunk size) whatever the file size.

Removing a file removes its manifest and its entry; its chunks are freed by :meth:`FileSystem.collect_garbage`:
it marks every chunk that any manifest on any node references (files, listed or not yet, and objects), and
each node sweeps the others stored before the oldest upload still in progress began (see
:mod:`dynamr.files.uploads`) and longer ago than a grace period.

*Objects* are unlisted files under an explicit key starting with :data:`OBJECT_PREFIX` (a job's
intermediate data); they are garbage-collection roots like files until their key is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from dynamr.background import each_bounded
from dynamr.errors import (
    BadRequestError,
    DataLostError,
    DynamrError,
    NotFoundError,
    PathIsDirectoryError,
    PathNotDirectoryError,
)
from dynamr.files import directory, paths, uploads
from dynamr.files.manifest import DEFAULT_CHUNK_SIZE, Manifest, resolve
from dynamr.store.client import AsyncClient

Progress = Callable[[int], None]
#: small files a tree upload writes at once, and files it lists per write of their directory
FILES_AT_ONCE = 16
TREE_BATCH = 512
#: manifests a listing or a walk fetches at once
MANIFESTS_AT_ONCE = 32
#: every object key starts with this, so garbage collection finds them all
OBJECT_PREFIX = b"o:"
#: how far the clocks of a writer and of the collector may disagree (seconds) without losing a chunk
CLOCK_MARGIN = 30.0


@dataclass(frozen=True, slots=True)
class FileStat:
    path: str
    kind: str  # "file" or "directory"
    size: int = 0
    chunks: int = 0
    chunk_size: int = 0
    mtime: float = 0.0
    entries: int = 0


@dataclass(frozen=True, slots=True)
class ListEntry:
    name: str
    kind: str
    size: int = 0
    mtime: float = 0.0


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    index: int
    chunk_id: bytes
    file_offset: int
    length: int
    nodes: tuple[str, ...]


class FileSystem:
    def __init__(self, client: AsyncClient, *, chunk_size: int = DEFAULT_CHUNK_SIZE, parallel: int = 4) -> None:
        self.client = client
        self.chunk_size = chunk_size
        self.parallel = parallel
        self._known_dirs: set[str] = set()
        self.uploads = uploads.Uploads(client)

    # --- metadata ------------------------------------------------------------------------------------

    async def _manifest(self, path: str) -> tuple[Manifest | None, bytes]:
        result = await self.client.get(paths.manifest_key(path))
        return resolve(result.values), result.context

    async def _entries(self, path: str) -> tuple[directory.Entries, bytes, bool]:
        result = await self.client.get(paths.directory_key(path))
        states = [directory.decode(v) for v in result.values]
        return directory.merge(states), result.context, bool(result.values)

    async def _update_directory(self, path: str, change: Callable[[directory.Entries], bool]) -> None:
        entries, context, _ = await self._entries(path)
        if change(entries):
            await self.client.put(paths.directory_key(path), directory.encode(entries), context=context)

    async def _ensure_parents(self, path: str) -> None:
        """Make sure every ancestor directory exists and lists its child on the way to ``path``."""
        chain = [*paths.ancestors(path), path]
        for parent_dir, child in itertools.pairwise(chain):
            if child == path or child in self._known_dirs:
                continue
            manifest, _ = await self._manifest(child)
            if manifest is not None:
                raise PathNotDirectoryError(f"{child} is a file, so {path} cannot be created under it")
            await self._add_entry(parent_dir, paths.name(child), directory.DIRECTORY)
            self._known_dirs.add(child)

    async def _add_entry(self, dir_path: str, name: str, kind: str) -> None:
        await self._add_entries(dir_path, [name], kind)

    async def _add_entries(self, dir_path: str, names: list[str], kind: str) -> None:
        """List ``names`` in a directory, in one write of its entry set."""
        def change(entries: directory.Entries) -> bool:
            present = directory.live(entries)
            missing = [name for name in names if present.get(name) != kind]
            for name in missing:
                directory.add(entries, name, kind)
            return bool(missing)

        await self._update_directory(dir_path, change)

    async def is_dir(self, path: str) -> bool:
        path = paths.normalize(path)
        if path == paths.ROOT:
            return True
        entries, _, _ = await self._entries(paths.parent(path))
        return directory.live(entries).get(paths.name(path)) == directory.DIRECTORY

    async def stat(self, path: str) -> FileStat:
        path = paths.normalize(path)
        manifest, _ = await self._manifest(path)
        if manifest is not None:
            return FileStat(path=path, kind="file", size=manifest.size, chunks=len(manifest.chunks),
                            chunk_size=manifest.chunk_size, mtime=manifest.mtime)
        if await self.is_dir(path):
            entries, _, _ = await self._entries(path)
            return FileStat(path=path, kind="directory", entries=len(directory.live(entries)))
        raise NotFoundError(f"no such file or directory: {path}")

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except NotFoundError:
            return False
        return True

    async def ls(self, path: str = "/", *, long: bool = False) -> list[ListEntry]:
        path = paths.normalize(path)
        manifest, _ = await self._manifest(path)
        if manifest is not None:
            return [ListEntry(name=paths.name(path), kind="file", size=manifest.size, mtime=manifest.mtime)]
        if not await self.is_dir(path):
            raise NotFoundError(f"no such file or directory: {path}")
        entries, _, _ = await self._entries(path)
        listing = sorted(directory.live(entries).items())
        if not long:
            return [ListEntry(name=n, kind="file" if k == directory.FILE else "directory") for n, k in listing]
        found = await self._manifests([paths.join(path, name) for name, kind in listing if kind == directory.FILE])
        manifests = iter(found)
        out = []
        for name, kind in listing:
            if kind == directory.FILE:
                mf = next(manifests)
                out.append(ListEntry(name=name, kind="file", size=mf.size if mf else 0, mtime=mf.mtime if mf else 0))
            else:
                out.append(ListEntry(name=name, kind="directory"))
        return out

    # --- writing -------------------------------------------------------------------------------------

    async def put_stream(self, stream: BinaryIO, remote: str, *, progress: Progress | None = None) -> FileStat:
        """Upload from a binary stream (read in chunk-size pieces; memory bounded by ``parallel`` chunks)."""
        remote = paths.normalize(remote)
        if remote == paths.ROOT or await self.is_dir(remote):
            raise PathIsDirectoryError(f"{remote} is a directory; give the file's full path")
        await self._ensure_parents(remote)
        async with self.uploads.session():
            stat = await self._write_file(stream, remote, progress)
            await self._add_entry(paths.parent(remote), paths.name(remote), directory.FILE)
        return stat

    async def _write_file(self, stream: BinaryIO, remote: str, progress: Progress | None) -> FileStat:
        """A file's chunks and manifest, not yet listed (inside an upload session)."""
        manifest = await self.write_chunks(_stream_pieces(stream, self.chunk_size), progress)
        _, context = await self._manifest(remote)
        await self.client.put(paths.manifest_key(remote), manifest.encode(), context=context)
        return FileStat(path=remote, kind="file", size=manifest.size, chunks=len(manifest.chunks),
                        chunk_size=self.chunk_size, mtime=manifest.mtime)

    async def write_chunks(self, pieces: AsyncIterator[bytes], progress: Progress | None = None) -> Manifest:
        """Store bytes given in pieces of any size as chunks (``parallel`` in flight); returns their manifest."""
        chunks: list[tuple[bytes, int]] = []
        inflight: deque[tuple[asyncio.Task[bytes], int]] = deque()
        size = 0
        pending = bytearray()

        async def send(data: bytes) -> None:
            inflight.append((asyncio.ensure_future(self.client.put_chunk(data)), len(data)))
            if len(inflight) >= self.parallel:
                chunks.append(await self._finish(inflight, progress))

        try:
            async for piece in pieces:
                size += len(piece)
                if not pending and len(piece) == self.chunk_size:
                    await send(bytes(piece))
                    continue
                pending += piece
                while len(pending) >= self.chunk_size:
                    await send(bytes(pending[:self.chunk_size]))
                    del pending[:self.chunk_size]
            if pending:
                await send(bytes(pending))
            while inflight:
                chunks.append(await self._finish(inflight, progress))
        finally:
            for task, _ in inflight:
                task.cancel()
        return Manifest(size=size, chunk_size=self.chunk_size, chunks=tuple(chunks), mtime=time.time())

    # --- objects: unlisted files under an explicit key (intermediate data) -------------------------------

    async def put_object(self, key: bytes, pieces: AsyncIterator[bytes]) -> Manifest:
        """Store bytes as chunks plus a manifest at ``key``, outside any directory (no listing, no parents).
        The key starts with :data:`OBJECT_PREFIX`; the object lives until :meth:`delete_object`."""
        if not key.startswith(OBJECT_PREFIX):
            raise BadRequestError(f"object key {key!r} must start with {OBJECT_PREFIX!r}")
        async with self.uploads.session():
            manifest = await self.write_chunks(pieces)
            await self.client.put(key, manifest.encode())
        return manifest

    async def object_manifest(self, key: bytes) -> Manifest:
        manifest = resolve((await self.client.get(key)).values)
        if manifest is None:
            raise NotFoundError(f"no object under key {key!r}")
        return manifest

    async def read_object(self, key: bytes, offset: int = 0, length: int = -1) -> AsyncIterator[bytes]:
        manifest = await self.object_manifest(key)
        async for piece in self._read_manifest(manifest, key.decode(errors="replace"), offset, length):
            yield piece

    async def publish_object(self, key: bytes, remote: str) -> Manifest:
        """Make the object at ``key`` the file ``remote`` as well: its manifest is written at the path (the
        chunks are shared, nothing is copied; the object itself stays). Idempotent: a file that already has
        the object's chunks keeps its manifest, and is listed (a publish cut off after the manifest was
        not). :class:`NotFoundError` when the object is gone."""
        manifest = await self.object_manifest(key)
        remote = paths.normalize(remote)
        current, context = await self._manifest(remote)
        self._known_dirs.difference_update(paths.ancestors(remote))  # a long-lived caller: they may be gone
        await self._ensure_parents(remote)
        if current is not None and current.chunks == manifest.chunks:
            published = current
        else:
            published = replace(manifest, mtime=time.time())
            await self.client.put(paths.manifest_key(remote), published.encode(), context=context)
        await self._add_entry(paths.parent(remote), paths.name(remote), directory.FILE)
        return published

    async def delete_object(self, key: bytes) -> bool:
        result = await self.client.get(key)
        if not result.values:
            return False
        await self.client.delete(key, context=result.context)
        return True

    @staticmethod
    async def _finish(inflight: deque[tuple[asyncio.Task[bytes], int]],
                      progress: Progress | None) -> tuple[bytes, int]:
        task, length = inflight.popleft()
        try:
            cid = await task
        except BaseException:
            for other, _ in inflight:
                other.cancel()
            raise
        if progress is not None:
            progress(length)
        return cid, length

    async def put_bytes(self, data: bytes, remote: str) -> FileStat:
        import io

        return await self.put_stream(io.BytesIO(data), remote)

    async def put_file(self, local: Path, remote: str, *, progress: Progress | None = None) -> FileStat:
        if local.is_dir():
            raise PathIsDirectoryError(f"{local} is a directory; use put_tree")
        with open(local, "rb") as stream:
            return await self.put_stream(stream, remote, progress=progress)

    async def put_tree(self, local: Path, remote: str, *, progress: Progress | None = None) -> list[FileStat]:
        """Upload every file under a local directory, keeping relative paths."""
        remote = paths.normalize(remote)
        out = []
        entries = sorted(p for p in local.rglob("*") if not p.is_dir())
        odd = [p for p in entries if not p.is_file()]
        if odd:  # never skipped in silence
            raise BadRequestError(f"{odd[0]} is not a regular file (a broken symlink, a pipe?); remove it first")
        targets = [(file, paths.join(remote, file.relative_to(local).as_posix())) for file in entries]
        for _, target in targets:
            await self._ensure_parents(target)  # (each directory once: known directories are remembered)
        for folder, names in _by_folder(targets).items():
            present = directory.live((await self._entries(folder))[0])
            taken = [name for name in names if present.get(name) == directory.DIRECTORY]
            if taken:
                raise PathIsDirectoryError(f"{paths.join(folder, taken[0])} is a directory; give the file's full "
                                           "path")

        async def one(item: tuple[Path, str]) -> FileStat:
            with open(item[0], "rb") as stream:
                return await self._write_file(stream, item[1], progress)

        async with self.uploads.session():  # one session for the whole tree
            for at in range(0, len(targets), TREE_BATCH):
                batch = targets[at:at + TREE_BATCH]
                # small files several at once (a file is a few round trips), big ones in turn (each already
                # keeps ``parallel`` chunks in flight)
                small = [t for t in batch if t[0].stat().st_size < self.chunk_size]
                written = {s.path: s for s in await each_bounded(small, one, FILES_AT_ONCE)}
                for item in batch:
                    if item[1] not in written:
                        written[item[1]] = await one(item)
                # then listed, a directory's files in one write (a listed file is complete)
                for folder, names in _by_folder(batch).items():
                    await self._add_entries(folder, names, directory.FILE)
                out += [written[t] for _, t in batch]
        return out

    # --- reading -------------------------------------------------------------------------------------

    async def _require_file(self, path: str) -> Manifest:
        path = paths.normalize(path)
        manifest, _ = await self._manifest(path)
        if manifest is not None:
            return manifest
        if await self.is_dir(path):
            raise PathIsDirectoryError(f"{path} is a directory, not a file")
        raise NotFoundError(f"no such file: {path}")

    async def read(self, path: str, offset: int = 0, length: int = -1) -> AsyncIterator[bytes]:
        """Stream the bytes of [offset, offset+length) in order, prefetching a few chunks."""
        manifest = await self._require_file(path)
        async for piece in self._read_manifest(manifest, paths.normalize(path), offset, length):
            yield piece

    async def _read_manifest(self, manifest: Manifest, label: str, offset: int, length: int) -> AsyncIterator[bytes]:
        spans = manifest.spans(offset, length)
        pending: deque[tuple[asyncio.Task[bytes], tuple[int, bytes, int, int, int]]] = deque()
        position = 0
        try:
            while position < len(spans) or pending:
                while position < len(spans) and len(pending) < self.parallel:
                    span = spans[position]
                    index, cid, chunk_offset, take, _ = span
                    whole = chunk_offset == 0 and take == manifest.chunks[index][1]
                    pending.append((asyncio.ensure_future(
                        self.client.read_chunk(cid, chunk_offset, -1 if whole else take)), span))
                    position += 1
                task, (index, cid, _, take, file_offset) = pending.popleft()
                try:
                    data = await task
                except DataLostError as exc:
                    raise DataLostError(f"{label}: bytes {file_offset}-{file_offset + take - 1} "
                                        f"(chunk {index}) are lost: {exc}") from exc
                yield data
        finally:
            for task, _ in pending:
                task.cancel()

    async def read_bytes(self, path: str, offset: int = 0, length: int = -1) -> bytes:
        return b"".join([piece async for piece in self.read(path, offset, length)])

    async def get_file(self, remote: str, local: Path, *, progress: Progress | None = None) -> int:
        """Download to a local file (written to a temporary name, renamed when complete)."""
        partial = local.with_name(local.name + ".dynamr-partial")
        written = 0
        loop = asyncio.get_running_loop()
        try:
            with open(partial, "wb") as out:
                async for piece in self.read(remote):
                    await loop.run_in_executor(None, out.write, piece)
                    written += len(piece)
                    if progress is not None:
                        progress(len(piece))
            partial.replace(local)
        finally:
            partial.unlink(missing_ok=True)
        return written

    # --- removal and garbage -------------------------------------------------------------------------

    async def rm(self, path: str, *, recursive: bool = False) -> int:
        """Remove a file, or a directory (only empty ones unless ``recursive``). Returns files removed."""
        path = paths.normalize(path)
        manifest, context = await self._manifest(path)
        if manifest is not None:
            await self.client.delete(paths.manifest_key(path), context=context)
            await self._update_directory(paths.parent(path), lambda e: directory.remove(e, paths.name(path)))
            return 1
        if not await self.is_dir(path):
            raise NotFoundError(f"no such file or directory: {path}")
        entries, context, _ = await self._entries(path)
        children = directory.live(entries)
        if children and not recursive:
            raise PathIsDirectoryError(f"{path} is a directory with {len(children)} entries; use rm -r")
        removed = 0
        for name in children:
            removed += await self.rm(paths.join(path, name), recursive=True)
        entries, context, found = await self._entries(path)
        if found:
            await self.client.delete(paths.directory_key(path), context=context)
        if path != paths.ROOT:
            await self._update_directory(paths.parent(path), lambda e: directory.remove(e, paths.name(path)))
            self._known_dirs.discard(path)
        return removed

    async def walk_manifests(self, path: str = "/") -> AsyncIterator[tuple[str, Manifest]]:
        path = paths.normalize(path)
        entries, _, _ = await self._entries(path)
        listing = sorted(directory.live(entries).items())
        files = [paths.join(path, name) for name, kind in listing if kind == directory.FILE]
        manifests = dict(zip(files, await self._manifests(files), strict=True))
        for name, kind in listing:
            child = paths.join(path, name)
            if kind == directory.FILE:
                if (manifest := manifests[child]) is not None:
                    yield child, manifest
            else:
                async for item in self.walk_manifests(child):
                    yield item

    async def _manifests(self, files: list[str]) -> list[Manifest | None]:
        """The manifests of many files, several fetched at once (None: not a file now)."""
        async def one(path: str) -> Manifest | None:
            return (await self._manifest(path))[0]

        return await each_bounded(files, one, MANIFESTS_AT_ONCE)

    async def collect_garbage(self, grace: float = 3600.0) -> int:
        """Free chunks no manifest references, stored before every upload in progress began and over ``grace``
        seconds ago. Returns how many chunk copies were freed. Every node must answer: a node that cannot
        list its manifests might hold the only reference to a chunk, so the round is refused instead."""
        began = time.time()
        starts, expired = await uploads.live_sessions(self.client, began)  # sessions first, then manifests
        referenced: set[bytes] = set()
        for prefix in (paths.MANIFEST_PREFIX, OBJECT_PREFIX):
            async for _, _, values in self.client.scan_replicas(prefix):
                for value in values:
                    try:
                        referenced.update(cid for cid, _ in Manifest.decode(value).chunks)
                    except BadRequestError:
                        continue  # not a manifest: it references nothing
        oldest = min([began, *(start - CLOCK_MARGIN for start in starts)])
        results = await self.client.sweep_chunks(sorted(referenced), grace + (time.time() - oldest))
        failed = {node: str(r) for node, r in results.items() if isinstance(r, DynamrError)}
        freed = sum(r.deleted for r in results.values() if not isinstance(r, DynamrError))
        for key in expired:  # sessions of writers that died
            with contextlib.suppress(DynamrError):
                await self.client.delete(key, context=(await self.client.get(key)).context)
        if failed:
            raise DynamrError(f"freed {freed} chunk(s), but some nodes could not sweep: {failed}")
        return freed

    # --- locality ------------------------------------------------------------------------------------

    async def locate(self, path: str, offset: int = 0, length: int = -1) -> list[ChunkLocation]:
        """For each chunk of a byte range, the nodes that actually hold it."""
        manifest = await self._require_file(path)
        spans = manifest.spans(offset, length)
        holders = await self.client.chunk_holders([cid for _, cid, _, _, _ in spans])
        return [ChunkLocation(index=index, chunk_id=cid, file_offset=file_offset, length=take,
                              nodes=tuple(holders[cid]))
                for index, cid, _, take, file_offset in spans]


async def _stream_pieces(stream: BinaryIO, size: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while True:
        data = await loop.run_in_executor(None, stream.read, size)
        if not data:
            return
        yield data


def _by_folder(targets: list[tuple[Path, str]]) -> dict[str, list[str]]:
    """The names of the remote paths, by the directory that lists them."""
    out: dict[str, list[str]] = {}
    for _, target in targets:
        out.setdefault(paths.parent(target), []).append(paths.name(target))
    return out
