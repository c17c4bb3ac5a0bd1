"""Ownership handoff: moving a transition's keys and chunks to their new owners, and dropping what a node no
longer owns once everyone has switched.

In the ``stream`` phase (see :mod:`dynamr.store.membership`) every old owner of a key still in the cluster
sends its copy to each new owner that was not an old one. One old owner would not do: a write acknowledged
by W of the N old owners may be missing from any one of them, and the new owner then holds the union,
merged. To keep the new owner from receiving each key N times, a key's first old owner sends it at once
and the others offer digests first, sending only what the new owner does not hold exactly (Chunks are
immutable: an old owner asks whether the new owner has the chunk.) Each node
reads its data in key order and sends many keys per ``MergeStates`` message (anti-entropy's repair
message), one message in flight per target: a slow target slows only its own stream (flow control by
acknowledgement), and ``handoff_bytes_per_second`` caps the total. After each batch the last key sent is
saved (``meta``), so a sender that crashes resumes there. Chunks follow, one ``ChunkStore`` each, in id
order, with the same checkpoint.

A write made during the transition reaches the new owners directly (joint writes), or as a hint kept for
them. A sender finishes only when no hint for a new owner is left on it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dynamr.errors import CorruptDataError, DynamrError, NotFoundError
from dynamr.rpc import messages as m
from dynamr.store import merkle, versions
from dynamr.store.engine import WriteTxn
from dynamr.store.membership import ClusterState
from dynamr.store.replica import split_hint_key
from dynamr.store.ring import Ring

if TYPE_CHECKING:
    from dynamr.store.node import StoreNode

log = logging.getLogger(__name__)

#: keys read from the engine at a time
SCAN_BATCH = 2048
#: bytes of states per MergeStates message
BATCH_BYTES = 4 << 20


def _checkpoint_key(kind: str, since: int) -> bytes:
    return f"transfer:{kind}:{since}".encode()


@dataclass
class Progress:
    """What this node has sent in the current transition's stream phase (``cluster status`` shows it)."""

    running: bool = False
    keys: int = 0
    chunks: int = 0
    bytes: int = 0


async def stream(node: StoreNode, state: ClusterState) -> None:
    """Send this node's part of a transition; returns when it is all acknowledged."""
    n = node.settings.quorum.n
    old, new = Ring(state.owners, node.settings.vnodes), Ring(state.pending, node.settings.vnodes)
    limiter = _Limiter(node.settings.handoff_bytes_per_second)
    node.handoff = Progress(running=True)
    try:
        sent = await _stream_keys(node, state, old, new, n, limiter)
        chunks = await _stream_chunks(node, state, old, new, n, limiter)
    finally:
        node.handoff.running = False
    if sent or chunks:
        log.info("handoff: sent %d key(s) and %d chunk(s) to their new owners", sent, chunks)
    pending_only = set(state.pending) - set(state.owners)
    while any(split_hint_key(raw)[1] in pending_only for raw, _ in node.replica.engine.scan("hints")):
        node.wake_handoff()
        await asyncio.sleep(0.2)  # hints of writes made meanwhile, for a new owner that was down


def _targets(state: ClusterState, me: str, old: Ring, new: Ring, n: int, key: bytes,
             first: bool | None = None) -> list[str]:
    """The new owners of a key this node sends it to: all that were not old owners, if this node is one.
    With ``first``, only keys this node is (True) or is not (False) the first old owner still in the
    cluster of."""
    before = old.preference_list(key, n)
    if me not in before:
        return []
    if first is not None and first != (next(o for o in before if state.status(o) != "left") == me):
        return []
    return [t for t in new.preference_list(key, n) if t not in before]


async def _stream_keys(node: StoreNode, state: ClusterState, old: Ring, new: Ring, n: int,
                       limiter: _Limiter) -> int:
    """Two passes: the keys this node is the first old owner of go as they are; then it *offers* the
    others (their digests) and sends only those the new owner lacks or holds other versions of. The first
    old owner of each key has usually sent it by then, so the new owner gets most keys once, not N times."""
    sent = 0
    for first in (True, False):
        sent += await _stream_pass(node, state, old, new, n, limiter, first)
    return sent


async def _stream_pass(node: StoreNode, state: ClusterState, old: Ring, new: Ring, n: int, limiter: _Limiter,
                       first: bool) -> int:
    engine = node.replica.engine
    mark = _checkpoint_key("keys" if first else "offered", state.since)
    start = engine.get("meta", mark) or b""
    sent = 0
    while True:
        scan = engine.scan("data", b"", start)
        batch = list(itertools.islice(scan, SCAN_BATCH))
        close = getattr(scan, "close", None)
        if close is not None:
            close()
        by_target: dict[str, list[tuple[bytes, bytes]]] = {}
        for key, raw in batch:
            for target in _targets(state, node.node_id, old, new, n, key, first):
                by_target.setdefault(target, []).append((key, raw))
        if not first:
            wanted = await asyncio.gather(*(_wanted(node, t, items) for t, items in by_target.items()))
            by_target = dict(zip(by_target, wanted, strict=True))
        await asyncio.gather(*(_send_states(node, t, items, limiter) for t, items in by_target.items()))
        sent += sum(map(len, by_target.values()))
        if len(batch) < SCAN_BATCH:
            return sent
        start = batch[-1][0] + b"\0"
        await node.committer.submit(_put_meta(mark, start))


async def _wanted(node: StoreNode, target: str, items: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The items whose versions ``target`` does not hold exactly (it compares digests of dots)."""
    offer = m.StatesOffer(keys=tuple(k for k, _ in items),
                          digests=tuple(merkle.key_digest(k, versions.dots_of(raw)[0]) for k, raw in items))
    reply = await _until_sent(node, target, offer)
    if not isinstance(reply, m.StatesWanted):
        raise DynamrError(f"node {target} answered an offer with {type(reply).__name__}")
    want = set(reply.keys)
    return [(k, raw) for k, raw in items if k in want]


async def _send_states(node: StoreNode, target: str, items: list[tuple[bytes, bytes]], limiter: _Limiter) -> None:
    for group in groups(items):
        keys, states = zip(*group, strict=True)
        await _until_sent(node, target, m.MergeStates(keys=keys, states=states))
        size = sum(map(len, states))
        node.handoff.keys += len(keys)
        node.handoff.bytes += size
        await limiter.took(size)


def groups(items: Iterable[tuple[bytes, bytes]], budget: int = BATCH_BYTES) -> Iterator[list[tuple[bytes, bytes]]]:
    """(key, encoded state) pairs in groups of at most ``budget`` bytes (at least one pair each): what one
    ``MergeStates`` message carries."""
    group: list[tuple[bytes, bytes]] = []
    size = 0
    for key, raw in items:
        if group and size + len(raw) > budget:
            yield group
            group, size = [], 0
        group.append((key, raw))
        size += len(raw) + len(key)
    if group:
        yield group


async def _until_sent(node: StoreNode, target: str, msg: m.Message) -> m.Message:
    """Send until the target answers; its answer (a target that is down holds up its own stream, not the
    others)."""
    delay = 0.2
    while True:
        try:
            return await node.call_peer(target, msg, node.settings.request_timeout * 4)
        except DynamrError as exc:
            log.debug("handoff to %s: %s; trying again", target, exc)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


async def _stream_chunks(node: StoreNode, state: ClusterState, old: Ring, new: Ring, n: int,
                         limiter: _Limiter) -> int:
    engine = node.replica.engine
    mark = _checkpoint_key("chunks", state.since)
    done = engine.get("meta", mark) or b""
    ids = sorted(cid for cid, _ in await node.chunks._run(lambda: list(node.blobs.scan())))
    sent = 0
    for cid in ids:
        if cid <= done:
            continue
        targets = _targets(state, node.node_id, old, new, n, cid)
        if targets:
            try:
                data = await node.chunks.read_local(cid)
            except (NotFoundError, CorruptDataError):
                continue  # swept or corrupt meanwhile: anti-entropy gives the new owner a good copy
            for target in targets:
                if await _has_chunk(node, target, cid):
                    continue  # another old owner sent it first
                await _until_sent(node, target, m.ChunkStore(chunk_id=cid, data=data))
                node.handoff.chunks += 1
                node.handoff.bytes += len(data)
                await limiter.took(len(data))
                sent += 1
        await node.committer.submit(_put_meta(mark, cid))
    return sent


async def _has_chunk(node: StoreNode, target: str, cid: bytes) -> bool:
    try:
        reply = await node.call_peer(target, m.ChunkHas(chunk_ids=(cid,)), node.settings.replica_timeout)
    except DynamrError:
        return False
    return isinstance(reply, m.ChunkHasReply) and cid in reply.chunk_ids


async def drop_unowned(node: StoreNode, state: ClusterState) -> int:
    """Delete the keys and chunks this node holds but no longer owns (every member has switched)."""
    n = node.settings.quorum.n
    ring = Ring(state.owners, node.settings.vnodes)
    me = node.node_id
    engine = node.replica.engine
    doomed = [key for key, _ in engine.scan("data") if me not in ring.preference_list(key, n)]

    def drop(txn: WriteTxn, keys: list[bytes]) -> int:
        dropped = 0
        for key in keys:
            if not node.owns(key):  # checked again now: a transition begun meanwhile may make it ours
                txn.delete("data", key)
                txn.delete("tombstones", key)
                dropped += 1
        return dropped

    done = 0
    for start in range(0, len(doomed), 1000):
        if node.pending_ring is not None:
            return done  # a new transition started: what is left waits for its end
        done += await node.committer.submit(functools.partial(drop, keys=doomed[start:start + 1000]))
    hinted = {split_hint_key(raw)[0] for raw, _ in engine.scan("chunk_hints")}
    chunks = [cid for cid, _ in await node.chunks._run(lambda: list(node.blobs.scan()))
              if me not in ring.preference_list(cid, n) and cid not in hinted]
    for cid in chunks:
        if node.pending_ring is not None:
            break
        if node.owns(cid):
            continue
        await node.chunks._run(node.blobs.delete, cid)
        done += 1
    return done


def _put_meta(key: bytes, value: bytes) -> Callable[[WriteTxn], None]:
    def op(txn: WriteTxn) -> None:
        txn.put("meta", key, value)

    return op


class _Limiter:
    """At most ``rate`` bytes per second over the whole transfer (0: no limit)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.total = 0

    async def took(self, nbytes: int) -> None:
        if self.rate <= 0:
            return
        self.total += nbytes
        ahead = self.total / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            await asyncio.sleep(ahead)

