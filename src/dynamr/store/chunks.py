"""Chunks: immutable, content-addressed blobs, replicated without versions.

A chunk's id is the xxh3-128 digest of its bytes, so every replica of a chunk is as good as any other and
replicas never conflict: chunks skip version vectors entirely. Their bytes live in the node's blob store
(a file per chunk, see :mod:`dynamr.store.blobs`); they are placed on the ring by their id and written
through the same sloppy quorum as keys (``StoreNode.replicate``). A fallback keeps a marker in the
``chunk_hints`` table and hands the chunk to its owner when it returns, then drops its own copy.

Every read verifies the whole chunk against its id first. A copy that fails is deleted on the spot and
reported as corrupt, so the reader moves to another replica and writes the good bytes back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import xxhash

from dynamr.errors import (
    BadRequestError,
    CorruptDataError,
    DynamrError,
    NotFoundError,
    StorageError,
    ValueTooLargeError,
)
from dynamr.rpc import messages as m
from dynamr.store.engine import WriteTxn
from dynamr.store.replica import hint_key, split_hint_key

if TYPE_CHECKING:
    from dynamr.store.node import StoreNode

log = logging.getLogger(__name__)

T = TypeVar("T")
ID_BYTES = 16


def chunk_id(data: bytes | memoryview) -> bytes:
    """The content address of a chunk."""
    return bytes(xxhash.xxh3_128_digest(data))


class ChunkService:
    """Chunk handlers of one node, registered on its dispatch table."""

    def __init__(self, node: StoreNode) -> None:
        self.node = node
        self.blobs = node.blobs
        self._io = ThreadPoolExecutor(4, thread_name_prefix="dynamr-blobs") if self.blobs.blocking else None
        for cls, handler in ((m.ChunkPut, self._on_put), (m.ChunkStore, self._on_store),
                             (m.ChunkRead, self._on_read), (m.ChunkHas, self._on_has),
                             (m.ChunkSweep, self._on_sweep)):
            node.dispatcher.register(cls, handler)
        node.handoff_rounds.append(self.hand_off)
        # A chunk stored (or stored again) while a sweep runs is never deleted by that sweep, even if the
        # sweep saw it old a moment before: puts note their ids here, the sweep checks under the same lock.
        self._guard = threading.Lock()
        self._sweeping = False
        self._touched: set[bytes] = set()
        self._sweep_turn = asyncio.Lock()

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        if self._io is None:
            return func(*args)
        return await asyncio.get_running_loop().run_in_executor(self._io, func, *args)

    def close(self) -> None:
        if self._io is not None:
            self._io.shutdown(wait=True)

    # --- local storage -------------------------------------------------------------------------------

    def _check(self, cid: bytes, data: bytes) -> None:
        if len(cid) != ID_BYTES:
            raise BadRequestError(f"a chunk id is {ID_BYTES} bytes (got {len(cid)})")
        if len(data) > self.node.settings.max_value_bytes:
            raise ValueTooLargeError(f"chunk of {len(data)} bytes exceeds the "
                                     f"{self.node.settings.max_value_bytes}-byte limit (max_value_bytes)")
        if chunk_id(data) != cid:
            raise BadRequestError(f"chunk {cid.hex()} content does not match its id (corrupted in transit?)")

    async def store_local(self, cid: bytes, data: bytes, hint_for: str = "") -> None:
        with self._guard:
            if self._sweeping:
                self._touched.add(cid)
        try:
            await self._run(self.blobs.put, cid, data)
        except StorageError as exc:
            self.node.health.failed(exc)
            raise
        if hint_for:
            await self.node.committer.submit(lambda txn: txn.put("chunk_hints", hint_key(cid, hint_for), b""))

    async def read_local(self, cid: bytes) -> bytes:
        """The verified bytes of a local chunk; a copy that fails its checksum is deleted and reported."""
        data = await self._run(self.blobs.get, cid)
        if data is None:
            raise NotFoundError(f"node {self.node.node_id} has no chunk {cid.hex()}")
        if chunk_id(data) != cid:
            log.error("chunk %s is corrupt on this node; deleting the bad copy", cid.hex())
            await self._run(self.blobs.delete, cid)
            raise CorruptDataError(f"node {self.node.node_id}: chunk {cid.hex()} fails its checksum")
        return data

    # --- handlers ------------------------------------------------------------------------------------

    async def _on_put(self, msg: m.ChunkPut) -> m.Ack:
        self._check(msg.chunk_id, msg.data)
        quorum = self.node.quorum_for(msg.n, w=msg.w)
        if self.node.health.problem:  # a full disk: let a replica that can keep a hint for us coordinate
            raise StorageError(f"node {self.node.node_id} cannot store chunks now ({self.node.health.problem}); "
                               "another replica may coordinate the write")
        own_copy: list[StorageError] = []

        async def local(hint_for: str) -> None:
            try:
                await self.store_local(msg.chunk_id, msg.data, hint_for)
            except StorageError as exc:
                if not hint_for:
                    own_copy.append(exc)
                raise

        await self.node.replicate(
            msg.chunk_id, quorum, self.node.timeout_for(msg.timeout), local=local,
            what=f"chunk {msg.chunk_id.hex()}",
            message=lambda hint_for: m.ChunkStore(chunk_id=msg.chunk_id, data=msg.data, hint_for=hint_for))
        if own_copy:
            # the others have it, but nobody keeps a hint for this node's missing copy: the client sends the
            # chunk again through another replica (chunk writes are idempotent), which will
            raise StorageError(f"node {self.node.node_id} could not keep its copy of chunk "
                               f"{msg.chunk_id.hex()} ({own_copy[0]}); another replica may coordinate the write")
        return m.Ack()

    async def _on_store(self, msg: m.ChunkStore) -> m.Ack:
        self._check(msg.chunk_id, msg.data)
        await self.store_local(msg.chunk_id, msg.data, msg.hint_for)
        return m.Ack()

    async def _on_read(self, msg: m.ChunkRead) -> m.ChunkData:
        data = await self.read_local(msg.chunk_id)
        if msg.offset < 0 or msg.offset > len(data):
            raise BadRequestError(f"offset {msg.offset} is outside chunk {msg.chunk_id.hex()} of {len(data)} bytes")
        end = len(data) if msg.length < 0 else min(len(data), msg.offset + msg.length)
        return m.ChunkData(data=data[msg.offset:end] if (msg.offset, end) != (0, len(data)) else data,
                           size=len(data))

    async def _on_has(self, msg: m.ChunkHas) -> m.ChunkHasReply:
        present = await self._run(lambda: tuple(c for c in msg.chunk_ids if self.blobs.contains(c)))
        return m.ChunkHasReply(chunk_ids=present)

    async def _on_sweep(self, msg: m.ChunkSweep) -> m.ChunkSweepReply:
        async with self._sweep_turn:
            return await self._sweep(set(msg.keep), time.time() - msg.older_than)

    async def _sweep(self, keep: set[bytes], cutoff: float) -> m.ChunkSweepReply:
        def sweep() -> tuple[list[bytes], int]:
            doomed, total = [], 0
            for cid, stored in self.blobs.scan():
                total += 1
                if cid not in keep and stored <= cutoff:
                    with self._guard:
                        if cid in self._touched:
                            continue
                        self.blobs.delete(cid)
                    doomed.append(cid)
            return doomed, total

        with self._guard:
            self._sweeping, self._touched = True, set()
        try:
            doomed, total = await self._run(sweep)
        finally:
            with self._guard:
                self._sweeping, self._touched = False, set()

        def forget_hints(txn: WriteTxn) -> None:
            for cid in doomed:
                for hkey, _ in txn.scan("chunk_hints", hint_key(cid, "")):
                    txn.delete("chunk_hints", hkey)

        if doomed:
            await self.node.committer.submit(forget_hints)
            log.info("swept %d unreferenced chunk(s)", len(doomed))
        return m.ChunkSweepReply(deleted=len(doomed), kept=total - len(doomed))

    # --- handoff -------------------------------------------------------------------------------------

    async def hand_off(self) -> int:
        node = self.node
        ready = [split_hint_key(raw) for raw, _ in node.replica.engine.scan("chunk_hints")]
        delivered = 0
        for cid, owner in ready:
            if not node.detector.is_up(owner):
                continue
            try:
                data = await self.read_local(cid)
                await node.call_peer(owner, m.ChunkStore(chunk_id=cid, data=data), node.settings.replica_timeout)
            except DynamrError as exc:
                log.debug("handoff of chunk %s to %s failed: %s", cid.hex(), owner, exc)
                continue
            await node.committer.submit(_delete_marker(hint_key(cid, owner)))
            still_hinted = next(iter(node.replica.engine.scan("chunk_hints", hint_key(cid, ""))), None) is not None
            if node.node_id not in node.ring.preference_list(cid, node.settings.quorum.n) and not still_hinted:
                await self._run(self.blobs.delete, cid)
            delivered += 1
        return delivered


def _delete_marker(marker: bytes) -> Callable[[WriteTxn], None]:
    def op(txn: WriteTxn) -> None:
        txn.delete("chunk_hints", marker)

    return op
