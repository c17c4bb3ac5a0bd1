"""Cluster membership as a pure state machine: who is in the cluster, which nodes own the ring, what an
operator staged, and how a committed change moves through its phases. No I/O; the node's asyncio layer
(:mod:`dynamr.store.members`) feeds it events and carries out its instructions, and the simulator
(``tests/sim/test_membership.py``) runs it over a network that drops, delays, duplicates and reorders.

**The state** (:class:`ClusterState`) is one value every node holds and gossips. ``version`` grows with
each change, and ``author`` (the node that made it) breaks ties, so of two states the newer wins
everywhere. Members have a status: ``joining`` (registered, not in the ring), ``valid``, ``leaving`` (in
the ring until its data is handed over) and ``left``.

**Changes are staged, then committed** (Riak's model: nothing moves until the operator commits). One node
makes changes: the *claimant*, the first valid member (by id) that the deciding node believes up. Every
other node forwards admin requests to it. A commit starts a *transition* from ``owners`` to ``pending``
in two phases, each ending when every member taking part (:func:`participants`) has acknowledged it:

1. ``prepare``: each node starts writing to the old owners *and* the new ones (joint writes). It
   acknowledges once the writes it started before that have ended. After this phase, no write reaches
   only the old owners.
2. ``stream``: each old owner still in the cluster sends its copy of each key to the key's new owners
   (one old owner would not do: a write acknowledged by W of N may be missing from any one). A node
   acknowledges when its part is sent.

Then the claimant *finishes*: ``owners`` becomes ``pending``, joining members become valid and leaving
ones left. Reads use ``owners`` throughout, so they see everything until the switch, and the new owners
hold everything from the switch on.

**Acknowledgements are idempotent** and re-sent until the state shows them, so a lost message or a
claimant that changes (a crash) only delays a phase.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dynamr.errors import BadRequestError
from dynamr.rpc import messages as wire

STATUSES = ("joining", "valid", "leaving", "left")
#: every legal move of a member's status
MOVES: frozenset[tuple[str, str]] = frozenset({
    ("joining", "valid"),  # a transition that added it finished
    ("valid", "leaving"),  # a leave was committed
    ("leaving", "left"),  # ...and the transition finished: its data is on the new owners
    ("valid", "left"),  # removed (a dead machine: its data comes from the other replicas)
    ("leaving", "valid"),  # not used yet: a leave cancelled before the transition finished
    ("joining", "left"),  # a registered node removed before it joined
    ("left", "joining"),  # a node that left registers again
})
ACTIONS = ("join", "leave", "remove")
PHASES = ("", "prepare", "stream")


class MembershipError(BadRequestError):
    """A membership change that cannot be made; the message says why and what to do."""


@dataclass(frozen=True, slots=True, order=True)
class Member:
    node_id: str
    host: str
    port: int
    status: str


@dataclass(frozen=True, slots=True)
class Change:
    action: str
    node_id: str


@dataclass(frozen=True, slots=True)
class ClusterState:
    version: int
    author: str
    members: tuple[Member, ...]
    #: the ring reads and writes use now
    owners: tuple[str, ...]
    #: the ring being moved to, while a transition runs (else empty)
    pending: tuple[str, ...] = ()
    phase: str = ""
    #: members that acknowledged the current phase, and the version the phase started at (an
    #: acknowledgement made before it is of an earlier phase)
    acks: tuple[str, ...] = ()
    since: int = 0
    staged: tuple[Change, ...] = ()
    #: "host:port" of the MapReduce coordinator, "" without one
    coordinator: str = ""

    # --- reading -------------------------------------------------------------------------------------

    def key(self) -> tuple[int, str]:
        return (self.version, self.author)

    def newer_than(self, other: ClusterState) -> bool:
        return self.key() > other.key()

    def member(self, node_id: str) -> Member | None:
        return next((m for m in self.members if m.node_id == node_id), None)

    def status(self, node_id: str) -> str:
        member = self.member(node_id)
        return member.status if member is not None else ""

    def live(self) -> list[str]:
        """Members that have not left, by id."""
        return [m.node_id for m in self.members if m.status != "left"]

    def addresses(self) -> dict[str, tuple[str, int]]:
        return {m.node_id: (m.host, m.port) for m in self.members if m.status != "left"}

    @property
    def moving(self) -> bool:
        return bool(self.phase)

    def claimant(self, up: Iterable[str]) -> str | None:
        """The node that makes changes, as a node that believes ``up`` are alive sees it."""
        alive = set(up)
        for m in self.members:
            if m.status == "valid" and m.node_id in alive:
                return m.node_id
        return None

    def participants(self) -> list[str]:
        """Members a phase waits for: every node of the old or the new ring that has not left."""
        return [n for n in self.live() if n in self.owners or n in self.pending]

    def planned_owners(self) -> tuple[str, ...]:
        """The ring the staged changes would give (applied to the ring being moved to, during a transition)."""
        owners = set(self.pending or self.owners)
        for change in self.staged:
            if change.action == "join":
                owners.add(change.node_id)
            else:
                owners.discard(change.node_id)
        return tuple(sorted(owners))


def bootstrap(members: Iterable[tuple[str, str, int]], coordinator: str = "") -> ClusterState:
    """The state every node of a new cluster starts from (the same on all: version 1, no author)."""
    listed = tuple(sorted(Member(n, h, p, "valid") for n, h, p in members))
    if not listed:
        raise MembershipError("a cluster needs at least one node")
    return ClusterState(version=1, author="", members=listed, owners=tuple(m.node_id for m in listed),
                        coordinator=coordinator)


def _next(state: ClusterState, author: str, **changes: object) -> ClusterState:
    return dataclasses.replace(state, version=state.version + 1, author=author, **changes)  # type: ignore[arg-type]


def _with_status(state: ClusterState, node_id: str, status: str) -> tuple[Member, ...]:
    out = []
    for m in state.members:
        if m.node_id == node_id:
            if (m.status, status) not in MOVES:
                raise MembershipError(f"node {node_id} cannot go from {m.status} to {status}")
            m = dataclasses.replace(m, status=status)
        out.append(m)
    return tuple(out)


# --- changes the claimant makes ------------------------------------------------------------------------


def register(state: ClusterState, me: str, node_id: str, host: str, port: int) -> ClusterState:
    """A new node asks to join: it becomes a ``joining`` member (not staged: the operator stages it)."""
    current = state.member(node_id)
    if current is not None and current.status != "left":
        if (current.host, current.port) == (host, port):
            return state  # asked again (a lost reply): nothing new
        raise MembershipError(f"node id {node_id} is taken by a member at {current.host}:{current.port}; "
                              "give the new node another --node-id")
    clash = next((m for m in state.members if (m.host, m.port) == (host, port) and m.status != "left"), None)
    if clash is not None:
        raise MembershipError(f"{host}:{port} is already member {clash.node_id}'s address")
    others = tuple(m for m in state.members if m.node_id != node_id)
    members = tuple(sorted((*others, Member(node_id, host, port, "joining"))))
    return _next(state, me, members=members)


def stage(state: ClusterState, me: str, change: Change, n: int) -> ClusterState:
    """Add a change to the plan; it moves nothing until :func:`commit`."""
    if change.action not in ACTIONS:
        raise MembershipError(f"unknown change {change.action!r} (one of {', '.join(ACTIONS)})")
    status = state.status(change.node_id)
    if not status or status == "left":
        raise MembershipError(f"node {change.node_id} is not a member of the cluster")
    if any(c.node_id == change.node_id for c in state.staged):
        raise MembershipError(f"a change of node {change.node_id} is already staged (see 'dynamr cluster plan')")
    if change.action == "join" and status != "joining":
        raise MembershipError(f"node {change.node_id} is {status}, not joining: only a registered new node joins")
    if change.action == "leave" and status != "valid":
        raise MembershipError(f"node {change.node_id} is {status}: only a valid member can leave")
    staged = (*state.staged, change)
    owners = dataclasses.replace(state, staged=staged).planned_owners()
    if len(owners) < n:
        raise MembershipError(f"the ring would have {len(owners)} node(s), fewer than N={n} replicas")
    return _next(state, me, staged=staged)


def unstage(state: ClusterState, me: str) -> ClusterState:
    """Forget every staged change."""
    return _next(state, me, staged=()) if state.staged else state


def commit(state: ClusterState, me: str) -> ClusterState:
    """Start the transition the staged changes describe. During a transition only removals can be
    committed (a participant that died would hold it up for ever): the transition starts again, from
    ``prepare``, towards the ring without them; what was streamed already stays where it went."""
    if state.moving and any(c.action != "remove" for c in state.staged):
        raise MembershipError(f"a transition is in progress ({state.phase}); wait for it to finish "
                              "('dynamr cluster status' shows it); only removing a dead node can change it now")
    if not state.staged:
        raise MembershipError("nothing is staged: stage changes with 'dynamr cluster join/leave/remove NODE'")
    members = state.members
    for change in state.staged:
        moved = dataclasses.replace(state, members=members)
        if change.action == "leave":
            members = _with_status(moved, change.node_id, "leaving")
        elif change.action == "remove":
            members = _with_status(moved, change.node_id, "left")
    return _next(state, me, members=members, pending=state.planned_owners(), phase="prepare", acks=(),
                 staged=(), since=state.version + 1)


def acknowledge(state: ClusterState, me: str, node_id: str, version: int, phase: str) -> ClusterState:
    """Node ``node_id`` has done its part of ``phase`` (as of the state ``version`` it had); when every
    participant has, the next phase starts, or the transition finishes."""
    if not state.moving or phase != state.phase or node_id in state.acks or node_id not in state.participants():
        return state
    if version < state.since:
        return state  # an acknowledgement of an earlier transition's phase of the same name
    acks = tuple(sorted((*state.acks, node_id)))
    if set(acks) < set(state.participants()):
        return _next(state, me, acks=acks)
    if state.phase == "prepare":
        return _next(state, me, phase="stream", acks=(), since=state.version + 1)
    return finish(state, me)


def finish(state: ClusterState, me: str) -> ClusterState:
    members = state.members
    for m in state.members:
        moved = dataclasses.replace(state, members=members)
        if m.status == "joining" and m.node_id in state.pending:
            members = _with_status(moved, m.node_id, "valid")
        elif m.status == "leaving":
            members = _with_status(moved, m.node_id, "left")
    return _next(state, me, members=members, owners=state.pending, pending=(), phase="", acks=())


def set_coordinator(state: ClusterState, me: str, address: str) -> ClusterState:
    return state if state.coordinator == address else _next(state, me, coordinator=address)


def merge(mine: ClusterState, theirs: ClusterState) -> ClusterState:
    """Gossip: the newer state wins (version, then author)."""
    return theirs if theirs.newer_than(mine) else mine


# --- one node's side: gossip, acknowledgements, the claimant's duties ----------------------------------


@dataclass(frozen=True, slots=True)
class SendDigest:
    """Tell ``to`` which state this node has (the node's pings carry it)."""

    to: str
    version: int
    author: str


@dataclass(frozen=True, slots=True)
class SendState:
    """Give ``to`` this node's state: it is newer than the one ``to`` said it has."""

    to: str
    state: ClusterState


@dataclass(frozen=True, slots=True)
class SendAck:
    """Tell the claimant ``to`` that this node has done its part of ``phase``."""

    to: str
    version: int
    phase: str


@dataclass(frozen=True, slots=True)
class Adopted:
    """This node now holds ``state`` (persist it, then act on it: ring, phase work)."""

    state: ClusterState


Instruction = SendDigest | SendState | SendAck | Adopted


class MembershipNode:
    """What one node does about membership, as a pure machine: events in, instructions out."""

    def __init__(self, me: str, state: ClusterState) -> None:
        self.me = me
        self.state = state
        #: (since, phase) of the last phase this node's own work finished for
        self.finished: tuple[int, str] = (0, "")

    def _adopt(self, state: ClusterState) -> list[Instruction]:
        if not state.newer_than(self.state):
            return []
        self.state = state
        return [Adopted(state)]

    def tick(self, up: Iterable[str]) -> list[Instruction]:
        """Every heartbeat: a digest to each peer that is up, and this node's acknowledgement again if the
        state does not show it yet."""
        alive = set(up) | {self.me}
        out: list[Instruction] = [SendDigest(p, self.state.version, self.state.author)
                                  for p in sorted(alive) if p != self.me]
        return out + self._ack(alive)

    def _ack(self, alive: set[str]) -> list[Instruction]:
        state = self.state
        if not state.moving or self.finished != (state.since, state.phase) or self.me in state.acks:
            return []
        if self.me not in state.participants():
            return []
        claimant = state.claimant(alive)
        if claimant is None:
            return []
        if claimant == self.me:
            return self._adopt(acknowledge(state, self.me, self.me, state.version, state.phase))
        return [SendAck(claimant, state.version, state.phase)]

    def on_digest(self, sender: str, version: int, author: str) -> list[Instruction]:
        if self.state.key() > (version, author):
            return [SendState(sender, self.state)]
        return []

    def on_state(self, state: ClusterState) -> list[Instruction]:
        return self._adopt(state)

    def on_ack(self, sender: str, version: int, phase: str, up: Iterable[str]) -> list[Instruction]:
        """A participant's acknowledgement; only the claimant records it (others ignore it: the sender
        retries with the claimant it sees)."""
        if self.state.claimant(set(up) | {self.me}) != self.me:
            return []
        return self._adopt(acknowledge(self.state, self.me, sender, version, phase))

    def phase_done(self, since: int, phase: str, up: Iterable[str]) -> list[Instruction]:
        """This node's work for ``phase`` (started at version ``since``) is done."""
        self.finished = (since, phase)
        return self._ack(set(up) | {self.me})

    def make(self, change: Callable[[ClusterState, str], ClusterState]) -> list[Instruction]:
        """An admin change (``register``, ``stage``, ``unstage``, ``commit`` with their arguments bound),
        made here: the caller checked that this node is the claimant."""
        return self._adopt(change(self.state, self.me))


# --- the wire form ------------------------------------------------------------------------------------


def to_record(state: ClusterState) -> wire.ClusterStateRecord:
    return wire.ClusterStateRecord(
        version=state.version, author=state.author, owners=state.owners, pending=state.pending,
        members=tuple(wire.MemberRecord(node_id=x.node_id, host=x.host, port=x.port, status=x.status)
                      for x in state.members),
        phase=state.phase, acks=state.acks, since=state.since, coordinator=state.coordinator,
        staged=tuple(wire.ChangeRecord(action=c.action, node_id=c.node_id) for c in state.staged))


def from_record(rec: wire.ClusterStateRecord) -> ClusterState:
    """A state received from a peer or read from disk, checked for what types alone do not say."""
    members = tuple(Member(x.node_id, x.host, x.port, x.status) for x in rec.members)
    ids = {x.node_id for x in members}
    if any(x.status not in STATUSES for x in members) or len(ids) != len(members):
        raise MembershipError("a cluster state with an unknown member status or a member twice")
    if rec.phase not in PHASES or not set(rec.owners) <= ids or not set(rec.pending) <= ids or not rec.owners:
        raise MembershipError("a cluster state whose ring names nodes that are not members")
    if any(c.action not in ACTIONS for c in rec.staged):
        raise MembershipError("a cluster state with an unknown staged change")
    return ClusterState(version=rec.version, author=rec.author, members=tuple(sorted(members)),
                        owners=tuple(sorted(rec.owners)), pending=tuple(sorted(rec.pending)), phase=rec.phase,
                        acks=tuple(sorted(rec.acks)), since=rec.since,
                        staged=tuple(Change(c.action, c.node_id) for c in rec.staged),
                        coordinator=rec.coordinator)
