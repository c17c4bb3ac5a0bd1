"""A cluster's nodes as the status views show them (``dynamr cluster status``, the dashboard): each node's
own answer, or for one that did not answer, the freshest health report gossip brought the others
(see :mod:`dynamr.store.gossip`) and which of them still reach it."""

from __future__ import annotations

from dataclasses import dataclass

from dynamr.errors import DynamrError
from dynamr.rpc import messages as m
from dynamr.store.client import ClusterView
from dynamr.store.membership import ClusterState

#: a node unreachable from here is shown as up for the nodes that hold it up, if its gossiped report is newer
#: than this (seconds)
ALIVE_WITHIN = 10.0


@dataclass(frozen=True)
class NodeRow:
    """One node as ``cluster status`` shows it."""

    node: str
    address: str
    #: up, storage failing, unreachable (from here, but up for others) or down
    state: str
    member: str
    #: its own answer, when it gave one
    status: m.NodeStatusReply | None
    #: its freshest gossiped health report among the answers
    report: m.HealthSeen | None
    #: nodes that answered and hold it up
    up_for: tuple[str, ...]


def node_rows(view: ClusterView, statuses: dict[str, m.NodeStatusReply | DynamrError],
              ring: ClusterState | None) -> list[NodeRow]:
    """Each node of ``view`` as the answers show it (``ring``: the membership, for each node's status in it)."""
    rows = []
    for node_id, address in view.nodes.items():
        st = statuses[node_id]
        seen = gossip_about(node_id, statuses)
        up_for = tuple(sorted(n for n, other in statuses.items()
                              if isinstance(other, m.NodeStatusReply) and node_id in other.up))
        if isinstance(st, m.NodeStatusReply):
            state = "storage failing" if st.storage_error else "up"
        else:
            state = "unreachable" if seen is not None and up_for and seen.age < ALIVE_WITHIN else "down"
        rows.append(NodeRow(node_id, f"{address[0]}:{address[1]}", state, ring.status(node_id) if ring else "",
                            st if isinstance(st, m.NodeStatusReply) else None, seen, up_for))
    return rows


def gossip_about(node_id: str, statuses: dict[str, m.NodeStatusReply | DynamrError]) -> m.HealthSeen | None:
    """The freshest health record of ``node_id`` among the nodes that answered (its own report first)."""
    own = statuses.get(node_id)
    if isinstance(own, m.NodeStatusReply):
        for seen in own.health:
            if seen.record.node_id == node_id:
                return seen
    heard = [seen for st in statuses.values() if isinstance(st, m.NodeStatusReply)
             for seen in st.health if seen.record.node_id == node_id]
    return min(heard, key=lambda seen: seen.age, default=None)


def handoff(st: m.NodeStatusReply) -> str:
    """What a node sent to new owners in the current (or last) change of membership."""
    if not (st.handing_off or st.handoff_keys or st.handoff_chunks):
        return "-"
    sent = f"{st.handoff_keys} keys, {st.handoff_chunks} chunks, {st.handoff_bytes / 1e6:.1f} MB"
    return f"sending: {sent}" if st.handing_off else f"sent {sent}"


def anti_entropy(st: m.NodeStatusReply) -> str:
    """One node's anti-entropy at a glance: the exchange running, or when the last ended and what the
    exchanges repaired so far."""
    if st.exchanging_with:
        now = f"exchanging with {st.exchanging_with}"
    elif st.last_exchange_age >= 0:
        now = f"last {st.last_exchange_age:.0f}s ago"
    else:
        now = "no exchange yet"
    repaired = f"{st.keys_repaired} keys, {st.chunks_repaired} chunks repaired"
    corrupt = f", {st.chunks_corrupt} corrupt found" if st.chunks_corrupt else ""
    return f"{now}; {repaired}{corrupt}"
