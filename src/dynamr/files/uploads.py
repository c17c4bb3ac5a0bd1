"""Upload sessions: how a writer keeps the chunks it has stored but not yet named safe from garbage collection.

Chunks are written before the manifest that names them, so for a while they are referenced by nothing.
Before its first chunk, a writer records a *session* at ``u:<id>`` (its start time and when it last renewed),
renews it every :data:`RENEW` seconds while it runs, and deletes it only after its manifests are stored
(and, for files, listed). The collector (:meth:`FileSystem.collect_garbage`) reads sessions first and then
every manifest, and never frees a chunk stored after the oldest live session began. A session not renewed
for :data:`LEASE` seconds belongs to a writer that died; it stops protecting anything and is removed.

One session may cover many objects (a map task's partitions): sessions nest, and only the outermost one
talks to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgpack

from dynamr.errors import DynamrError
from dynamr.store.client import AsyncClient

PREFIX = b"u:"
#: a session not renewed for this long (seconds) belongs to a writer that is gone
LEASE = 600.0
#: how often a live session is renewed
RENEW = 60.0


@dataclass(frozen=True, slots=True)
class Session:
    started: float
    renewed: float

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb([self.started, self.renewed])
        return packed

    @classmethod
    def decode(cls, data: bytes) -> Session | None:
        """None for a value that is not a session (it protects nothing)."""
        try:
            started, renewed = msgpack.unpackb(data)
            return cls(float(started), float(renewed))
        except (ValueError, TypeError):
            return None


class Uploads:
    """The sessions of one file-system client: one in the store while any writer of this client needs it."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._users = 0
        self._lock = asyncio.Lock()
        self._key = b""
        self._renewer: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """Protect every chunk written inside from garbage collection until the block ends."""
        async with self._lock:
            if not self._users:
                await self._open()
            self._users += 1
        try:
            yield
        finally:
            async with self._lock:
                self._users -= 1
                if not self._users:
                    await self._close()

    async def _open(self) -> None:
        key = PREFIX + secrets.token_hex(12).encode()
        started = time.time()
        await self.client.put(key, Session(started, started).encode())
        self._key = key
        self._renewer = asyncio.create_task(self._renew(key, started))

    async def _close(self) -> None:
        key, self._key = self._key, b""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        with contextlib.suppress(DynamrError):  # a leftover session expires after its lease
            await self.client.delete(key, context=(await self.client.get(key)).context)

    async def _renew(self, key: bytes, started: float) -> None:
        while True:
            await asyncio.sleep(RENEW)
            with contextlib.suppress(DynamrError):
                context = (await self.client.get(key)).context
                await self.client.put(key, Session(started, time.time()).encode(), context=context)


async def live_sessions(client: AsyncClient, now: float) -> tuple[list[float], list[bytes]]:
    """The start times of live sessions, and the keys of expired ones (a scan of every node)."""
    starts: list[float] = []
    expired: set[bytes] = set()
    live: set[bytes] = set()
    async for _, key, values in client.scan_replicas(PREFIX):
        sessions = [s for s in (Session.decode(v) for v in values) if s is not None]
        fresh = [s for s in sessions if now - s.renewed < LEASE]
        if fresh:
            starts.append(min(s.started for s in fresh))
            live.add(key)
        else:
            expired.add(key)
    return starts, sorted(expired - live)
