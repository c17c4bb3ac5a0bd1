"""The node's local storage engine, behind a small interface: LMDB for real, a dict twin for tests.

An engine holds a few named tables (``TABLES``) of byte keys and values. Reads are direct. Writes are
*operations*: functions of a :class:`WriteTxn` run inside one transaction, so a read-modify-write (merge a
replica state into what is stored) is atomic. :meth:`Engine.apply` runs a whole batch of operations in one
transaction (group commit, see :mod:`dynamr.store.commit`); one operation's failure does not fail the rest.

LMDB is opened by the process that uses it, never across a fork. ``fsync="always"`` syncs each commit
before it returns; ``periodic`` and ``never`` leave syncing to :meth:`Engine.sync` and the OS.
"""

from __future__ import annotations

import abc
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import lmdb

from dynamr.errors import StorageError

TABLES = ("data", "hints", "tombstones", "meta", "chunk_hints")
#: LMDB's default limit on key length
LMDB_MAX_KEY = 511


class WriteTxn(Protocol):
    def get(self, table: str, key: bytes) -> bytes | None: ...
    def put(self, table: str, key: bytes, value: bytes) -> None: ...
    def delete(self, table: str, key: bytes) -> None: ...
    def scan(self, table: str, prefix: bytes) -> list[tuple[bytes, bytes]]: ...


Operation = Callable[[WriteTxn], Any]


class Engine(abc.ABC):
    #: True when writes may block on disk, so callers should run :meth:`apply` off the event loop
    blocking = False

    @abc.abstractmethod
    def get(self, table: str, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def scan(self, table: str, prefix: bytes = b"", start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with ``prefix`` (and is at least ``start``), in key order (a consistent
        snapshot)."""

    @abc.abstractmethod
    def count(self, table: str) -> int: ...

    @abc.abstractmethod
    def apply(self, ops: list[Operation]) -> list[Any]:
        """Run operations in one transaction; each result is its return value or the exception it raised."""

    def sync(self) -> None:  # noqa: B027 - nothing to do for engines without a disk
        """Flush committed data to stable storage."""

    def disk_free(self) -> int:
        """Bytes free on the volume that holds the data (0: no disk)."""
        return 0

    def close(self) -> None:  # noqa: B027
        """Release files."""


def _run_ops(txn: WriteTxn, ops: list[Operation]) -> list[Any]:
    results: list[Any] = []
    for op in ops:
        try:
            results.append(op(txn))
        except StorageError:
            raise  # the transaction itself is broken: the whole batch fails
        except Exception as exc:
            results.append(exc)
    return results


class MemoryEngine(Engine):
    """A dict per table. Same semantics as LMDB, nothing on disk."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[bytes, bytes]] = {name: {} for name in TABLES}
        self._lock = threading.Lock()

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._tables[table].get(key)

    def scan(self, table: str, prefix: bytes = b"", start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        items = sorted((k, v) for k, v in self._tables[table].items() if k.startswith(prefix) and k >= start)
        return iter(items)

    def count(self, table: str) -> int:
        return len(self._tables[table])

    def apply(self, ops: list[Operation]) -> list[Any]:
        with self._lock:
            return _run_ops(_MemoryTxn(self._tables), ops)


class _MemoryTxn:
    def __init__(self, tables: dict[str, dict[bytes, bytes]]) -> None:
        self._tables = tables

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._tables[table].get(key)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._tables[table][key] = value

    def delete(self, table: str, key: bytes) -> None:
        self._tables[table].pop(key, None)

    def scan(self, table: str, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self._tables[table].items() if k.startswith(prefix))


class LmdbEngine(Engine):
    """LMDB environment in ``path`` with one named database per table."""

    blocking = True

    def __init__(self, path: Path, *, map_size: int, fsync: str = "always") -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._env = lmdb.open(str(path), map_size=map_size, max_dbs=len(TABLES) + 1, subdir=True,
                              sync=fsync == "always", metasync=fsync == "always", readahead=False,
                              max_readers=256)
        self._dbs = {name: self._env.open_db(name.encode()) for name in TABLES}

    def get(self, table: str, key: bytes) -> bytes | None:
        with self._env.begin(db=self._dbs[table], buffers=False) as txn:
            value: bytes | None = txn.get(key)
            return value

    def scan(self, table: str, prefix: bytes = b"", start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        with self._env.begin(db=self._dbs[table]) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(max(prefix, start)):
                return
            for key, value in cursor:
                if not key.startswith(prefix):
                    return
                yield key, value

    def disk_free(self) -> int:
        try:
            return shutil.disk_usage(self.path).free
        except OSError:
            return 0

    def count(self, table: str) -> int:
        with self._env.begin() as txn:
            entries: int = txn.stat(self._dbs[table])["entries"]
            return entries

    def apply(self, ops: list[Operation]) -> list[Any]:
        try:
            with self._env.begin(write=True) as txn:
                return _run_ops(_LmdbTxn(txn, self._dbs, self._full_error), ops)
        except lmdb.MapFullError as exc:
            raise self._full_error() from exc
        except (lmdb.Error, OSError) as exc:
            raise StorageError(f"the store at {self.path} could not commit: {exc} "
                               "(is the disk full or failing?)") from exc

    def _full_error(self) -> StorageError:
        return StorageError(
            f"the store at {self.path} reached its map_size ({self._env.info()['map_size']} bytes); "
            "raise map_size in the cluster settings and restart the node")

    def sync(self) -> None:
        self._env.sync(True)

    def close(self) -> None:
        self._env.close()


class _LmdbTxn:
    def __init__(self, txn: Any, dbs: dict[str, Any], full_error: Callable[[], StorageError]) -> None:
        self._txn = txn
        self._dbs = dbs
        self._full_error = full_error

    def get(self, table: str, key: bytes) -> bytes | None:
        value: bytes | None = self._txn.get(key, db=self._dbs[table])
        return value

    def put(self, table: str, key: bytes, value: bytes) -> None:
        try:
            self._txn.put(key, value, db=self._dbs[table])
        except lmdb.MapFullError as exc:
            raise self._full_error() from exc
        except lmdb.Error as exc:
            raise StorageError(f"write failed: {exc}") from exc

    def delete(self, table: str, key: bytes) -> None:
        self._txn.delete(key, db=self._dbs[table])

    def scan(self, table: str, prefix: bytes) -> list[tuple[bytes, bytes]]:
        cursor = self._txn.cursor(db=self._dbs[table])
        out: list[tuple[bytes, bytes]] = []
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                out.append((key, value))
        return out
