"""Chunks: immutable, content-addressed blobs, replicated without versions.

A chunk's id is the xxh3-128 digest of its bytes, so every replica of a chunk is as good as any other and
replicas never conflict: chunks skip version vectors entirely. They live in the ``chunks`` table (value:
8-byte store time in ms, then the bytes) and are placed on the ring by their id, written through the same
sloppy quorum as keys (``StoreNode.replicate``); a fallback keeps a marker in ``chunk_hints`` and hands the
chunk to its owner when it returns, then drops its own copy.

Every read verifies the whole chunk against its id first. A copy that fails is deleted on the spot and
reported as corrupt, so the reader moves to another replica and writes the good bytes back.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import TYPE_CHECKING

import xxhash

from dynamr.errors import BadRequestError, CorruptDataError, DynamrError, NotFoundError, ValueTooLargeError
from dynamr.rpc import messages as m
from dynamr.store.engine import WriteTxn
from dynamr.store.replica import hint_key, split_hint_key

if TYPE_CHECKING:
    from dynamr.store.node import StoreNode

log = logging.getLogger(__name__)

_STAMP = struct.Struct(">Q")
ID_BYTES = 16


def chunk_id(data: bytes | memoryview) -> bytes:
    """The content address of a chunk."""
    return bytes(xxhash.xxh3_128_digest(data))


class ChunkService:
    """Chunk handlers of one node, registered on its dispatch table."""

    def __init__(self, node: StoreNode) -> None:
        self.node = node
        self.engine = node.replica.engine
        for cls, handler in ((m.ChunkPut, self._on_put), (m.ChunkStore, self._on_store),
                             (m.ChunkRead, self._on_read), (m.ChunkHas, self._on_has),
                             (m.ChunkSweep, self._on_sweep)):
            node.dispatcher.register(cls, handler)
        node.handoff_rounds.append(self.hand_off)

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
        record = _STAMP.pack(int(time.time() * 1000)) + data

        def op(txn: WriteTxn) -> None:
            txn.put("chunks", cid, record)
            if hint_for:
                txn.put("chunk_hints", hint_key(cid, hint_for), b"")

        await self.node.committer.submit(op)

    def read_local(self, cid: bytes) -> bytes:
        record = self.engine.get("chunks", cid)
        if record is None:
            raise NotFoundError(f"node {self.node.node_id} has no chunk {cid.hex()}")
        data = record[_STAMP.size:]
        if chunk_id(data) != cid:
            raise CorruptDataError(f"node {self.node.node_id}: chunk {cid.hex()} fails its checksum")
        return data

    # --- handlers ------------------------------------------------------------------------------------

    async def _on_put(self, msg: m.ChunkPut) -> m.Ack:
        self._check(msg.chunk_id, msg.data)
        quorum = self.node.quorum_for(msg.n, w=msg.w)

        async def local(hint_for: str) -> None:
            await self.store_local(msg.chunk_id, msg.data, hint_for)

        await self.node.replicate(
            msg.chunk_id, quorum, self.node.timeout_for(msg.timeout), local=local,
            what=f"chunk {msg.chunk_id.hex()}",
            message=lambda hint_for: m.ChunkStore(chunk_id=msg.chunk_id, data=msg.data, hint_for=hint_for))
        return m.Ack()

    async def _on_store(self, msg: m.ChunkStore) -> m.Ack:
        self._check(msg.chunk_id, msg.data)
        await self.store_local(msg.chunk_id, msg.data, msg.hint_for)
        return m.Ack()

    async def _on_read(self, msg: m.ChunkRead) -> m.ChunkData:
        try:
            data = self.read_local(msg.chunk_id)
        except CorruptDataError:
            log.error("chunk %s is corrupt on this node; deleting the bad copy", msg.chunk_id.hex())
            await self.node.committer.submit(lambda txn: txn.delete("chunks", msg.chunk_id))
            raise
        if msg.offset < 0 or msg.offset > len(data):
            raise BadRequestError(f"offset {msg.offset} is outside chunk {msg.chunk_id.hex()} of {len(data)} bytes")
        end = len(data) if msg.length < 0 else min(len(data), msg.offset + msg.length)
        return m.ChunkData(data=data[msg.offset:end] if (msg.offset, end) != (0, len(data)) else data,
                           size=len(data))

    async def _on_has(self, msg: m.ChunkHas) -> m.ChunkHasReply:
        return m.ChunkHasReply(chunk_ids=tuple(c for c in msg.chunk_ids if self.engine.get("chunks", c) is not None))

    async def _on_sweep(self, msg: m.ChunkSweep) -> m.ChunkSweepReply:
        keep = set(msg.keep)
        cutoff = int((time.time() - msg.older_than) * 1000)
        doomed = [cid for cid, record in self.engine.scan("chunks")
                  if cid not in keep and _STAMP.unpack_from(record)[0] <= cutoff]
        total = self.engine.count("chunks")

        def op(txn: WriteTxn) -> None:
            for cid in doomed:
                txn.delete("chunks", cid)
                for hkey, _ in txn.scan("chunk_hints", hint_key(cid, "")):
                    txn.delete("chunk_hints", hkey)

        if doomed:
            await self.node.committer.submit(op)
            log.info("swept %d unreferenced chunk(s)", len(doomed))
        return m.ChunkSweepReply(deleted=len(doomed), kept=total - len(doomed))

    # --- handoff -------------------------------------------------------------------------------------

    async def hand_off(self) -> int:
        node = self.node
        ready = [split_hint_key(raw) for raw, _ in self.engine.scan("chunk_hints")]
        delivered = 0
        for cid, owner in ready:
            if not node.detector.is_up(owner):
                continue
            try:
                data = self.read_local(cid)
                await node.call_peer(owner, m.ChunkStore(chunk_id=cid, data=data), node.settings.replica_timeout)
            except DynamrError as exc:
                log.debug("handoff of chunk %s to %s failed: %s", cid.hex(), owner, exc)
                continue
            preferred = node.ring.preference_list(cid, node.settings.quorum.n)

            def op(txn: WriteTxn, cid: bytes = cid, owner: str = owner, preferred: tuple[str, ...] = preferred) -> None:
                txn.delete("chunk_hints", hint_key(cid, owner))
                if node.node_id not in preferred and not txn.scan("chunk_hints", hint_key(cid, "")):
                    txn.delete("chunks", cid)

            await node.committer.submit(op)
            delivered += 1
        return delivered
