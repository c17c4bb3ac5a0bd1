"""A node's upkeep of what it holds for others: hints handed back to their owners, and tombstones purged
once every node holds them.

Hints go to their owner many keys per ``MergeStates`` message (anti-entropy's repair message); a hint is
removed only if no newer write reached it meanwhile. A tombstone is purged by the key's first preferred node
when no node is down, every preferred replica holds exactly the same tombstones and no other node holds any
other version (an undelivered hint of an older write would otherwise resurrect it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from dynamr.errors import DeadlineExceededError, DynamrError, QuorumError, UnavailableError
from dynamr.rpc import messages as m
from dynamr.store import versions
from dynamr.store.versions import State

if TYPE_CHECKING:
    from dynamr.store.node import StoreNode

log = logging.getLogger(__name__)


async def hand_off(node: StoreNode, batch: int = 5000) -> int:
    """Deliver hints to owners that are up, many keys per message (``MergeStates``, anti-entropy's
    repair); a delivered hint is removed. Returns how many went."""
    by_owner: dict[str, list[tuple[bytes, State]]] = {}
    for count, (key, owner, state) in enumerate(node.replica.hints()):
        if count >= batch:
            break
        if node.detector.is_up(owner):
            by_owner.setdefault(owner, []).append((key, state))
    budget = node.settings.max_message_bytes // 4
    delivered = 0
    for owner, items in by_owner.items():
        for group in _bounded(items, budget):
            try:
                await _deliver(node, owner, group)
            except DynamrError as exc:
                log.debug("handoff of %d hint(s) to %s failed: %s", len(group), owner, exc)
                break
            dropped = await asyncio.gather(*(node.committer.submit(node.replica.op_drop_hint(k, owner, st))
                                             for k, st in group))
            delivered += sum(1 for d in dropped if d)
    if delivered:
        log.info("handed off %d hint(s)", delivered)
    return delivered


async def _deliver(node: StoreNode, owner: str, group: list[tuple[bytes, State]]) -> None:
    """Hand hints to their owner; the hints of a member that left go to each key's owners now instead."""
    keys = tuple(k for k, _ in group)
    encoded = tuple(versions.encode_state(state) for _, state in group)
    if owner in node.addresses:
        await node.call_peer(owner, m.MergeStates(keys=keys, states=encoded), node.settings.request_timeout)
        return
    n = node.settings.quorum.n
    for key, state in group:
        for target in node.ring.preference_list(key, n):
            if target == node.node_id:
                await node.committer.submit(node.replica.op_merge(key, state))
            else:
                await node.call_peer(target, m.MergeStates(keys=(key,), states=(versions.encode_state(state),)),
                                     node.settings.request_timeout)


async def reap_tombstones(node: StoreNode, batch: int = 500) -> int:
    """Purge deletes that every node holds (checked now); only the key's first preferred node acts."""
    if node.detector.down:
        return 0
    purged = 0
    for key in node.replica.tombstone_keys()[:batch]:
        if node.ring.walk(key)[0] != node.node_id:
            continue
        local = node.replica.read(key)
        if not versions.tombstone_only(local):
            continue
        try:
            if await _purge_everywhere(node, key, local):
                purged += 1
        except (DeadlineExceededError, UnavailableError, QuorumError) as exc:
            log.debug("tombstone purge of %r postponed: %s", key, exc)
    return purged

async def _purge_everywhere(node: StoreNode, key: bytes, local: State) -> bool:
    expected = versions.dots(local)
    timeout = node.settings.replica_timeout
    peers = [p for p in node.addresses if p != node.node_id]
    replies = await asyncio.gather(*(node.call_peer(p, m.ReplicaRead(key=key), timeout) for p in peers))
    preferred = set(node.ring.preference_list(key, node.settings.quorum.n))
    holders = []
    for peer, reply in zip(peers, replies, strict=True):
        assert isinstance(reply, m.ReplicaState)
        dots = versions.dots(versions.decode_state(reply.state))
        # A preferred replica without the tombstone, or anyone with another version (a newer write,
        # an undelivered hint of an older one), means the delete is not everywhere yet: keep it.
        if dots != expected and (dots or peer in preferred):
            return False
        if dots:
            holders.append(peer)
    encoded = versions.encode_state(local)
    for peer in holders:
        await node.call_peer(peer, m.ReplicaPurge(key=key, state=encoded), timeout)
    return bool(await node.committer.submit(node.replica.op_purge(key, local)))



def _bounded(items: list[tuple[bytes, State]], budget: int) -> list[list[tuple[bytes, State]]]:
    """Items in groups whose keys and values stay within ``budget`` bytes (at least one item each)."""
    groups: list[list[tuple[bytes, State]]] = [[]]
    size = 0
    for key, state in items:
        weight = len(key) + sum(len(s.value or b"") + 64 for s in state)
        if groups[-1] and size + weight > budget:
            groups.append([])
            size = 0
        groups[-1].append((key, state))
        size += weight
    return [g for g in groups if g]
