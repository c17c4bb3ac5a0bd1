"""Bounded version metadata: the contexts of a key's versions drop the entries of dead epochs.

Every wipe of a node's disk (and every unclean restart without fsync) gives it a new epoch, so a new actor
id ``node@epoch`` (see :mod:`dynamr.store.replica`). The old actor's entries stay in the contexts (``past``)
of the key's later versions, one more per wipe, forever. This drops them, safely:

- An entry ``(actor, counter)`` in a context is there to cover the versions that actor made up to
  ``counter``: merging drops a version whose dot another's context covers. Once no copy of the key
  anywhere holds a version made by the actor, the entry covers nothing. It can cover nothing later
  either, because a dead epoch never mints again: its node runs under another epoch, and epochs are never
  reused.
- "Nowhere" is checked the way tombstone purging checks it. The key's first preferred node reads the key
  from every node, hints included, while no node is believed down. It then asks each node to prune, and
  each refuses if it holds a version of a pruned actor by then (``Replica.op_prune``).
- A node's current epoch is learned from its answers to pings; an actor of a node whose epoch is not
  known yet is never pruned.
- What is left: a replica write sent before the check and delivered after the prune, carrying a version
  of a pruned actor. It would come back as a sibling of the newer version: a false conflict that the next
  write resolves, not a lost write. It needs a message delayed past the replica timeout, on a connection
  the check itself just used.

Candidates are found by anti-entropy's scans, which read every key anyway (``consider``), and pruned in
small batches by the tombstone reaper's loop (``run``). Dots do not change, so neither do the digests
anti-entropy compares.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from dynamr.errors import DynamrError
from dynamr.rpc import messages as m
from dynamr.store import versions

if TYPE_CHECKING:
    from dynamr.store.node import StoreNode

log = logging.getLogger(__name__)

#: keys remembered for pruning at most (the rest are found by a later scan)
MAX_CANDIDATES = 10000
#: keys pruned per round of the reaper's loop
BATCH = 200


class ContextPruner:
    def __init__(self, node: StoreNode) -> None:
        self.node = node
        #: key -> the dead actors its contexts name
        self.candidates: dict[bytes, frozenset[str]] = {}
        self.pruned = 0
        node.dispatcher.register(m.ReplicaPrune, self._on_prune)

    def consider(self, key: bytes, state: versions.State) -> None:
        """A key a scan met: remember it if this node leads it and its contexts name dead epochs."""
        node = self.node
        if len(self.candidates) >= MAX_CANDIDATES or not any(sib.past for sib in state):
            return
        dead = versions.dead_actors(state, node.epochs)
        if dead and node.ring.walk(key)[0] == node.node_id:
            self.candidates[key] = dead

    async def run(self) -> int:
        """Prune a batch of candidates everywhere; returns how many keys were pruned."""
        node = self.node
        if node.detector.down or not self.candidates:
            return 0
        done = 0
        for key in list(self.candidates)[:BATCH]:
            dead = self.candidates.pop(key)
            try:
                done += await self._prune_everywhere(key, dead)
            except DynamrError as exc:
                log.debug("pruning the context of %r postponed: %s", key, exc)
        self.pruned += done
        return done

    async def _prune_everywhere(self, key: bytes, dead: frozenset[str]) -> bool:
        node = self.node
        timeout = node.settings.replica_timeout
        peers = [p for p in node.addresses if p != node.node_id]
        replies = await asyncio.gather(*(node.call_peer(p, m.ReplicaRead(key=key), timeout) for p in peers))
        states = [versions.decode_state(r.state) for r in replies if isinstance(r, m.ReplicaState)]
        if len(states) != len(peers):
            return False
        if any(sib.actor in dead for state in (*states, node.replica.read(key)) for sib in state):
            return False  # a version of a dead epoch is still somewhere: its dot must stay covered
        actors = tuple(sorted(dead))
        holders = [p for p, state in zip(peers, states, strict=True) if state]
        await asyncio.gather(*(node.call_peer(p, m.ReplicaPrune(key=key, actors=actors), timeout) for p in holders))
        return bool(await node.committer.submit(node.replica.op_prune(key, dead)))

    async def _on_prune(self, msg: m.ReplicaPrune) -> m.Ack:
        self.node.check_key(msg.key)
        await self.node.committer.submit(self.node.replica.op_prune(msg.key, frozenset(msg.actors)))
        return m.Ack()
