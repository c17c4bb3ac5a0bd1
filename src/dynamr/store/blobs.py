"""Where chunk bytes live on a node: one file per chunk (or a dict, for in-process tests).

Chunks are immutable and a few MiB each, so a file per chunk beats an LMDB value: deleting one returns
its disk space at once (an LMDB file never shrinks), reading one does not map pages into the node's
resident memory, and a bad sector or a flipped bit shows up in exactly one file. A put writes a temporary
file, optionally fsyncs it, and renames it into place, so a crash never leaves a half-written chunk under
a valid name. A chunk's store time is its file's modification time (refreshed when stored again).

File layout: ``<root>/<first two hex digits>/<32 hex digits of the id>``.
"""

from __future__ import annotations

import abc
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from dynamr.errors import StorageError


class BlobStore(abc.ABC):
    #: True when calls may block on disk (callers run them on a worker thread)
    blocking = False

    @abc.abstractmethod
    def put(self, blob_id: bytes, data: bytes) -> None: ...

    @abc.abstractmethod
    def get(self, blob_id: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def delete(self, blob_id: bytes) -> None: ...

    @abc.abstractmethod
    def contains(self, blob_id: bytes) -> bool: ...

    @abc.abstractmethod
    def scan(self) -> Iterator[tuple[bytes, float]]:
        """Every blob id with the time (epoch seconds) it was last stored."""

    def count(self) -> int:
        return sum(1 for _ in self.scan())


class MemoryBlobStore(BlobStore):
    def __init__(self) -> None:
        self._blobs: dict[bytes, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def put(self, blob_id: bytes, data: bytes) -> None:
        with self._lock:
            self._blobs[blob_id] = (bytes(data), time.time())

    def get(self, blob_id: bytes) -> bytes | None:
        item = self._blobs.get(blob_id)
        return None if item is None else item[0]

    def delete(self, blob_id: bytes) -> None:
        with self._lock:
            self._blobs.pop(blob_id, None)

    def contains(self, blob_id: bytes) -> bool:
        return blob_id in self._blobs

    def scan(self) -> Iterator[tuple[bytes, float]]:
        with self._lock:
            items = [(k, v[1]) for k, v in self._blobs.items()]
        return iter(items)

    def corrupt(self, blob_id: bytes) -> None:
        """Flip a byte of a stored blob (tests of checksum verification)."""
        data, stamp = self._blobs[blob_id]
        self._blobs[blob_id] = (bytes([data[0] ^ 0xFF]) + data[1:], stamp)


class DirectoryBlobStore(BlobStore):
    blocking = True

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob("*/*.tmp-*"):  # a crash mid-write leaves only temporary files
            leftover.unlink(missing_ok=True)

    def path(self, blob_id: bytes) -> Path:
        name = blob_id.hex()
        return self.root / name[:2] / name

    def put(self, blob_id: bytes, data: bytes) -> None:
        final = self.path(blob_id)
        if final.exists():
            os.utime(final)  # same id, same bytes: only the store time moves
            return
        temporary = final.with_name(f"{final.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            final.parent.mkdir(exist_ok=True)
            with open(temporary, "wb") as out:
                out.write(data)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(temporary, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise StorageError(f"cannot store chunk {blob_id.hex()} under {self.root}: {exc.strerror} "
                               "(is the disk full?)") from exc

    def get(self, blob_id: bytes) -> bytes | None:
        try:
            with open(self.path(blob_id), "rb") as src:
                return src.read()
        except FileNotFoundError:
            return None

    def delete(self, blob_id: bytes) -> None:
        self.path(blob_id).unlink(missing_ok=True)

    def contains(self, blob_id: bytes) -> bool:
        return self.path(blob_id).exists()

    def scan(self) -> Iterator[tuple[bytes, float]]:
        for bucket in sorted(self.root.iterdir()):
            if not bucket.is_dir():
                continue
            for entry in os.scandir(bucket):
                if ".tmp-" in entry.name:
                    continue
                try:
                    yield bytes.fromhex(entry.name), entry.stat().st_mtime
                except (ValueError, FileNotFoundError):
                    continue
