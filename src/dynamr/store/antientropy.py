"""Anti-entropy: replicas compare hash trees in the background and repair only the keys and chunks that differ;
a scrubber re-hashes chunk copies on a schedule.

Read repair mends a key when someone reads it; hinted handoff mends the writes a down node missed while a
fallback stood in. Neither brings back the data of a node whose disk was wiped or lost, nor a copy that is
never read. This does, the way Dynamo and Riak do it: every ``anti_entropy_interval`` seconds a node takes
the next peer that is up and

1. builds its tree of the keys and chunks the two share (:mod:`dynamr.store.merkle`) and asks the peer for
   its own (``TreeRequest``);
2. lists, on both sides, the keys (with digests) and chunks of the leaves that differ (``SegmentRequest``),
   a bounded group of leaves at a time;
3. fetches the states it lacks or differs on (``StatesRequest``), merges them into its replica, and sends
   the merged states of keys the peer lacks or differs on (``MergeStates``); chunks missing on one side are
   copied with ``ChunkRead`` and ``ChunkStore``.

Both sides end with the same versions of every key they share, since merging is idempotent and
commutative. Scans run on the event loop in small batches and sleep between them so they take at most
``anti_entropy_share`` of it (foreground requests wait at most one batch); repair traffic is held to
``anti_entropy_bytes_per_second``. Keys written with a per-request N below the cluster's are brought to the
cluster's N: anti-entropy knows no other placement.

The scrubber reads every local chunk copy once per ``scrub_interval`` (at ``scrub_bytes_per_second``) and
checks it against its id; a corrupt copy is deleted, and the next exchange with a peer that has a good one
copies it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from dynamr.errors import BadRequestError, CorruptDataError, DynamrError, NotFoundError
from dynamr.rpc import messages as m
from dynamr.store import merkle, transfer, versions
from dynamr.store.merkle import SEGMENTS, SharedSet

if TYPE_CHECKING:
    from dynamr.store.node import StoreNode

log = logging.getLogger(__name__)

T = TypeVar("T", bound=m.Message)

#: keys read from the engine between two pauses of a scan
SCAN_BATCH = 512
#: leaves listed per SegmentRequest (bounds the memory and the reply of one round)
LEAVES_PER_ROUND = 128
#: deadline of one anti-entropy request: the peer scans its store (paced) to answer
EXCHANGE_TIMEOUT = 300.0


class AntiEntropy:
    """A node's anti-entropy exchanges and chunk scrubbing, and the handlers its peers call."""

    def __init__(self, node: StoreNode) -> None:
        self.node = node
        s = node.settings
        self.interval = s.anti_entropy_interval
        self.share = s.anti_entropy_share
        self.rate = s.anti_entropy_bytes_per_second
        self.exchanges = 0
        self.keys_repaired = 0
        self.chunks_repaired = 0
        self.exchanging_with = ""
        self.last_exchange: float | None = None
        self.chunks_scrubbed = 0
        self.chunks_corrupt = 0
        self._turn = itertools.count()
        self._one_at_a_time = asyncio.Lock()
        for cls, handler in ((m.TreeRequest, self._on_tree), (m.SegmentRequest, self._on_segments),
                             (m.StatesRequest, self._on_states), (m.MergeStates, self._on_merge),
                             (m.RunExchange, self._on_run), (m.StatesOffer, self._on_offer)):
            node.dispatcher.register(cls, handler)

    def last_exchange_age(self) -> float:
        """Seconds since the last exchange ended (-1: none yet)."""
        return -1.0 if self.last_exchange is None else time.monotonic() - self.last_exchange

    # --- background loops ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Exchange with one peer every interval, forever (not at all when the interval is 0)."""
        if self.interval <= 0:
            return
        while True:
            await asyncio.sleep(self.interval)
            peer = self.next_peer()
            if peer is None:
                continue
            try:
                await self.exchange(peer)
            except DynamrError as exc:
                log.info("anti-entropy exchange with %s did not finish: %s", peer, exc)
            except Exception:
                log.exception("anti-entropy exchange with %s failed", peer)

    def next_peer(self) -> str | None:
        """The next peer that is up, in turn."""
        node = self.node
        peers = sorted(p for p in node.addresses if p != node.node_id and node.detector.is_up(p))
        return peers[next(self._turn) % len(peers)] if peers else None

    async def scrub_forever(self) -> None:
        interval = self.node.settings.scrub_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await self.scrub()
            except Exception:
                log.exception("chunk scrub failed")

    async def scrub(self) -> int:
        """Re-hash every local chunk copy (paced); corrupt ones are deleted. Returns how many were corrupt."""
        chunks = self.node.chunks
        ids = await chunks._run(lambda: [cid for cid, _ in self.node.blobs.scan()])
        corrupt = 0
        for cid in ids:
            try:
                data = await chunks.read_local(cid)
            except CorruptDataError:
                corrupt += 1
                self.chunks_corrupt += 1
                continue
            except NotFoundError:
                continue  # swept meanwhile
            self.chunks_scrubbed += 1
            await asyncio.sleep(len(data) / self.node.settings.scrub_bytes_per_second)
        if corrupt:
            log.warning("scrub found %d corrupt chunk copies (deleted; anti-entropy copies them back)", corrupt)
        return corrupt

    # --- one exchange --------------------------------------------------------------------------------

    async def exchange(self, peer: str) -> tuple[int, int]:
        """Compare and repair everything shared with ``peer``; returns (keys, chunks) repaired."""
        async with self._one_at_a_time:
            self.exchanging_with = peer
            try:
                keys, chunks = await self._exchange(peer)
            finally:
                self.exchanging_with = ""
            self.exchanges += 1
            self.keys_repaired += keys
            self.chunks_repaired += chunks
            self.last_exchange = time.monotonic()
            if keys or chunks:
                log.info("anti-entropy with %s repaired %d key(s) and %d chunk(s)", peer, keys, chunks)
            return keys, chunks

    async def _exchange(self, peer: str) -> tuple[int, int]:
        mine = await self.shared_set(peer)
        reply = await self._ask(peer, m.TreeRequest(peer=self.node.node_id), m.TreeReply)
        if len(reply.keys) != SEGMENTS or len(reply.chunks) != SEGMENTS:
            raise BadRequestError(f"node {peer} sent a tree of the wrong shape")
        key_leaves = mine.keys.differing(reply.keys)
        chunk_leaves = mine.chunks.differing(reply.chunks)
        keys = chunks = 0
        for start in range(0, max(len(key_leaves), len(chunk_leaves)), LEAVES_PER_ROUND):
            some_keys = key_leaves[start:start + LEAVES_PER_ROUND]
            some_chunks = chunk_leaves[start:start + LEAVES_PER_ROUND]
            listed = await self.shared_set(peer, some_keys, some_chunks)
            theirs = await self._ask(peer, m.SegmentRequest(peer=self.node.node_id, key_segments=tuple(some_keys),
                                                            chunk_segments=tuple(some_chunks)), m.SegmentReply)
            if len(theirs.keys) != len(theirs.digests):
                raise BadRequestError(f"node {peer} sent {len(theirs.keys)} keys with {len(theirs.digests)} digests")
            key_plan = merkle.plan_keys(listed.listed_keys, dict(zip(theirs.keys, theirs.digests, strict=True)))
            keys += await self._repair_keys(peer, key_plan)
            chunks += await self._repair_chunks(peer, merkle.plan_chunks(listed.listed_chunks, theirs.chunks))
        return keys, chunks

    async def _ask(self, peer: str, msg: m.Message, kind: type[T]) -> T:
        reply = await self.node.call_peer(peer, msg, EXCHANGE_TIMEOUT)
        if not isinstance(reply, kind):
            raise BadRequestError(f"node {peer} answered {type(msg).__name__} with {type(reply).__name__}")
        return reply

    async def _repair_keys(self, peer: str, plan: merkle.Repair) -> int:
        node = self.node
        pending = list(plan.fetch)
        while pending:
            reply = await self._ask(peer, m.StatesRequest(keys=tuple(pending)), m.StatesReply)
            if not reply.states or len(reply.states) > len(pending):
                raise BadRequestError(f"node {peer} answered a states request with {len(reply.states)} states")
            got, pending = pending[:len(reply.states)], pending[len(reply.states):]
            merges = [node.committer.submit(node.replica.op_merge(key, versions.decode_state(raw)))
                      for key, raw in zip(got, reply.states, strict=True) if raw]
            await asyncio.gather(*merges)
            await self._throttle(sum(map(len, reply.states)))
        for batch in self._batches(plan.send):
            keys, states = zip(*batch, strict=True)
            await self._ask(peer, m.MergeStates(keys=keys, states=states), m.Ack)
            await self._throttle(sum(map(len, states)))
        return len(set(plan.fetch) | set(plan.send))

    def _batches(self, keys: Iterable[bytes]) -> Iterator[list[tuple[bytes, bytes]]]:
        """(key, local state) pairs to send, in batches that stay well inside one message."""
        engine = self.node.replica.engine
        held = ((key, engine.get("data", key) or b"") for key in keys)
        return transfer.groups(((k, raw) for k, raw in held if raw), self.node.settings.max_message_bytes // 4)

    async def _repair_chunks(self, peer: str, plan: merkle.Repair) -> int:
        node = self.node
        moved = 0
        for cid in plan.fetch:
            reply = await self._ask(peer, m.ChunkRead(chunk_id=cid), m.ChunkData)
            node.chunks._check(cid, reply.data)
            await node.chunks.store_local(cid, reply.data)
            await self._throttle(len(reply.data))
            moved += 1
        for cid in plan.send:
            try:
                data = await node.chunks.read_local(cid)
            except (NotFoundError, CorruptDataError):
                continue  # swept or found corrupt meanwhile: the peer's copy is not ours to give
            await self._ask(peer, m.ChunkStore(chunk_id=cid, data=data), m.Ack)
            await self._throttle(len(data))
            moved += 1
        return moved

    async def _throttle(self, nbytes: int) -> None:
        if nbytes and self.rate > 0:
            await asyncio.sleep(nbytes / self.rate)

    # --- building this side's trees ------------------------------------------------------------------

    async def shared_set(self, peer: str, key_leaves: Iterable[int] = (),
                         chunk_leaves: Iterable[int] = ()) -> SharedSet:
        """This node's side of what it shares with ``peer``: its trees, and the keys and chunks of the given
        leaves listed."""
        node = self.node
        if peer not in node.addresses or peer == node.node_id:
            raise BadRequestError(f"unknown peer {peer!r}")
        shared = SharedSet(node.ring, node.settings.quorum.n, node.node_id, peer, key_leaves, chunk_leaves)
        await self._scan_keys(shared)
        ids = await node.chunks._run(lambda: [cid for cid, _ in node.blobs.scan()])
        for i in range(0, len(ids), SCAN_BATCH):
            started = time.perf_counter()
            for cid in ids[i:i + SCAN_BATCH]:
                shared.add_chunk(cid)
            await self._pause(started)
        return shared

    async def _scan_keys(self, shared: SharedSet) -> None:
        engine = self.node.replica.engine
        start = b""
        while True:
            started = time.perf_counter()
            scan = engine.scan("data", b"", start)
            batch = list(itertools.islice(scan, SCAN_BATCH))
            with contextlib.suppress(Exception):
                scan.close()  # type: ignore[attr-defined]
            consider = self.node.pruner.consider
            for key, raw in batch:
                dots, has_context = versions.dots_of(raw)
                shared.add_key(key, dots)
                if has_context:
                    consider(key, versions.decode_state(raw))
            if len(batch) < SCAN_BATCH:
                return
            start = batch[-1][0] + b"\0"
            await self._pause(started)

    async def _pause(self, started: float) -> None:
        """Sleep long enough that the work since ``started`` is at most ``share`` of the time."""
        busy = time.perf_counter() - started
        await asyncio.sleep(busy * (1 / self.share - 1))

    # --- handlers ------------------------------------------------------------------------------------

    async def _on_run(self, msg: m.RunExchange) -> m.ExchangeReply:
        node = self.node
        if msg.peer and (msg.peer not in node.addresses or msg.peer == node.node_id):
            raise BadRequestError(f"unknown peer {msg.peer!r}: name another node of the cluster")
        peers = [msg.peer] if msg.peer else sorted(p for p in node.addresses
                                                   if p != node.node_id and node.detector.is_up(p))
        keys = chunks = 0
        for peer in peers:
            k, c = await self.exchange(peer)
            keys, chunks = keys + k, chunks + c
        return m.ExchangeReply(peers=tuple(peers), keys=keys, chunks=chunks)

    async def _on_tree(self, msg: m.TreeRequest) -> m.TreeReply:
        shared = await self.shared_set(msg.peer)
        return m.TreeReply(keys=tuple(shared.keys.leaves), chunks=tuple(shared.chunks.leaves))

    async def _on_segments(self, msg: m.SegmentRequest) -> m.SegmentReply:
        leaves = (*msg.key_segments, *msg.chunk_segments)
        if len(leaves) > 2 * LEAVES_PER_ROUND or not all(0 <= s < SEGMENTS for s in leaves):
            raise BadRequestError(f"a segment request names at most {LEAVES_PER_ROUND} leaves of each kind, "
                                  f"each below {SEGMENTS}")
        shared = await self.shared_set(msg.peer, msg.key_segments, msg.chunk_segments)
        return m.SegmentReply(keys=tuple(shared.listed_keys), digests=tuple(shared.listed_keys.values()),
                              chunks=tuple(shared.listed_chunks))

    async def _on_states(self, msg: m.StatesRequest) -> m.StatesReply:
        budget = self.node.settings.max_message_bytes // 4
        states: list[bytes] = []
        size = 0
        for key in msg.keys:
            raw = self.node.replica.engine.get("data", key) or b""
            if states and size + len(raw) > budget:
                break
            states.append(raw)
            size += len(raw) + 16
        return m.StatesReply(states=tuple(states))

    async def _on_offer(self, msg: m.StatesOffer) -> m.StatesWanted:
        if len(msg.keys) != len(msg.digests):
            raise BadRequestError(f"{len(msg.keys)} keys offered with {len(msg.digests)} digests")
        engine = self.node.replica.engine
        wanted = tuple(key for key, digest in zip(msg.keys, msg.digests, strict=True)
                       if merkle.key_digest(key, versions.dots_of(engine.get("data", key) or b"")[0]) != digest)
        return m.StatesWanted(keys=wanted)

    async def _on_merge(self, msg: m.MergeStates) -> m.Ack:
        node = self.node
        if len(msg.keys) != len(msg.states):
            raise BadRequestError(f"{len(msg.keys)} keys with {len(msg.states)} states")
        ops = []
        for key, raw in zip(msg.keys, msg.states, strict=True):
            node.check_key(key)
            if not node.owns(key):
                raise BadRequestError(f"node {node.node_id} is not a replica of key {key!r}")
            ops.append(node.committer.submit(node.replica.op_merge(key, versions.decode_state(raw))))
        await asyncio.gather(*ops)
        return m.Ack()


