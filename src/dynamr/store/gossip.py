"""Node health spread by gossip: each node's own report, versioned, carried on a few pings per round.

Every node keeps a table of health records, one per member (:class:`~dynamr.rpc.messages.HealthRecord`:
its epoch, the peers its failure detector holds down, its keys, hints, free disk and storage error). A
record's version is ``(generation, beat)``: the node's start time and its heartbeat rounds since, so a
record only ever gets replaced by a newer one from the same node, and a restarted node's outrank those of
its previous run. Each heartbeat round a node writes its own record anew and sends its whole table on the
pings to :data:`FANOUT` peers chosen at random; a peer merges it (newest version wins per node, which is
commutative, associative and idempotent, so tables converge however messages are delayed, repeated or
reordered) and answers with its own table.

Liveness for routing stays local (:mod:`dynamr.store.failure`: the Dynamo paper's point that a node only
needs to know whom *it* can reach); gossip tells every node, and ``dynamr cluster status`` asked of any
node, how each member is doing as that member last reported it, and how long ago that report was new: a
node cut off from the asker but alive to others shows as such, and a node everyone has stopped hearing
from shows a growing age. :class:`HealthTable` is pure; :func:`own_record` and :func:`gossip_targets` are
the few lines that touch the node.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from dynamr.rpc import messages as m

if TYPE_CHECKING:
    from dynamr.store.node import StoreNode

#: peers per heartbeat round whose ping carries this node's table
FANOUT = 3


def version(record: m.HealthRecord) -> tuple[int, int]:
    return record.generation, record.beat


class HealthTable:
    """The newest health record of each member, and when (local clock) each last advanced."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._records: dict[str, m.HealthRecord] = {}
        self._advanced: dict[str, float] = {}

    def merge(self, records: Iterable[m.HealthRecord], now: float, members: Iterable[str]) -> list[str]:
        """Keep the newer of ours and theirs for each member (records of non-members and our own are
        ignored: nobody reports for us but us); returns the nodes whose record advanced."""
        known = set(members)
        advanced = []
        for record in records:
            node = record.node_id
            if node == self.node_id or node not in known:
                continue
            ours = self._records.get(node)
            if ours is None or version(record) > version(ours):
                self._records[node] = record
                self._advanced[node] = now
                advanced.append(node)
        return advanced

    def set_own(self, record: m.HealthRecord, now: float) -> None:
        self._records[self.node_id] = record
        self._advanced[self.node_id] = now

    def forget(self, members: Iterable[str]) -> None:
        """Drop the records of nodes that are no longer members."""
        keep = set(members)
        for node in set(self._records) - keep:
            del self._records[node]
            del self._advanced[node]

    def records(self) -> tuple[m.HealthRecord, ...]:
        return tuple(self._records[node] for node in sorted(self._records))

    def seen(self, now: float) -> tuple[m.HealthSeen, ...]:
        """Every record, with the seconds since it last advanced here."""
        return tuple(m.HealthSeen(record=self._records[node], age=round(max(now - self._advanced[node], 0.0), 3))
                     for node in sorted(self._records))

    def get(self, node_id: str) -> m.HealthRecord | None:
        return self._records.get(node_id)


def own_record(node: StoreNode, generation: int, beat: int) -> m.HealthRecord:
    """This node's health as of now."""
    engine = node.replica.engine
    return m.HealthRecord(
        node_id=node.node_id, generation=generation, beat=beat, epoch=node.replica.epoch,
        down=tuple(sorted(node.detector.down)), keys=engine.count("data"), hints=engine.count("hints"),
        disk_free=engine.disk_free(), storage_error=node.health.problem)


def gossip_targets(peers: Sequence[str], rng: random.Random) -> set[str]:
    """The peers whose pings carry our table this round."""
    return set(rng.sample(list(peers), min(FANOUT, len(peers))))
