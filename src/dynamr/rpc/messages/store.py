"""The store's messages: liveness and cluster information, key-value operations, replica-level operations
and chunks.

Store messages come in two groups: the client-facing ones (``Get``, ``Put``, ``Delete``, ``ClusterInfo``,
``NodeStatus``), which any node coordinates, and the replica-level ones a coordinator sends to the nodes
holding a key (``ReplicaRead``, ``ReplicaWrite``, ``ReplicaPurge``). Replica states travel as opaque bytes
(an encoded sibling set, see :mod:`dynamr.store.versions`), so this module stays free of store logic.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynamr.rpc.messages.base import Message, Record, record, register

# --- liveness and cluster information -----------------------------------------------------------


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class HealthRecord(Record):
    """One node's health as it reports it, spread by gossip (see dynamr.store.gossip)."""

    node_id: str
    #: milliseconds since 1970 when the node started: a restarted node's records outrank its old ones
    generation: int
    #: the node's heartbeat rounds since it started (with ``generation``, the record's version)
    beat: int
    epoch: str
    #: the peers its failure detector holds down
    down: tuple[str, ...]
    keys: int
    hints: int
    #: bytes free on the volume of its data (0: not on disk)
    disk_free: int
    #: its last storage error in the past minute ("" when its disk takes writes)
    storage_error: str


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSeen(Record):
    """A gossiped health record, with how long ago (seconds) the node holding it saw it advance."""

    record: HealthRecord
    age: float


@register(1)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    sender: str = ""
    #: the sender's cluster state, as (version, author) (gossip: see dynamr.store.membership)
    version: int = 0
    author: str = ""
    #: the sender's table of node health, on some pings (gossip: see dynamr.store.gossip)
    health: tuple[HealthRecord, ...] = ()


@register(2)
@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    node_id: str
    epoch: str
    version: int = 0
    author: str = ""
    #: the answering node's table of node health, when the ping carried one
    health: tuple[HealthRecord, ...] = ()


@register(3)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInfo(Message):
    pass


@register(4)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInfoReply(Message):
    #: (node_id, host, port) of every member
    nodes: tuple[tuple[str, str, int], ...]
    n: int
    r: int
    w: int
    vnodes: int
    #: ids of the members the answering node currently believes down
    down: tuple[str, ...]
    max_key_bytes: int
    max_value_bytes: int
    #: "host:port" of the MapReduce coordinator, empty when there is none
    coordinator: str = ""
    #: the members whose tokens make the ring (``nodes`` also lists members joining); empty: all of them
    owners: tuple[str, ...] = ()
    #: the cluster state's version (a client refetches this reply when it moves)
    version: int = 0


@register(5)
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus(Message):
    pass


@register(6)
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatusReply(Message):
    node_id: str
    epoch: str
    keys: int
    hints: int
    tombstones: int
    up: tuple[str, ...]
    down: tuple[str, ...]
    chunks: int = 0
    #: the node's last storage error in the past minute ("" when its disk takes writes)
    storage_error: str = ""
    #: anti-entropy (see dynamr.store.antientropy): exchanges finished, keys and chunks repaired by them,
    #: the peer of the exchange running now ("" when none), seconds since the last exchange finished (-1:
    #: none yet)
    exchanges: int = 0
    keys_repaired: int = 0
    chunks_repaired: int = 0
    exchanging_with: str = ""
    last_exchange_age: float = -1.0
    #: chunk copies re-hashed by the scrubber, and copies it found corrupt (deleted; anti-entropy rebuilds
    #: them from another replica)
    chunks_scrubbed: int = 0
    chunks_corrupt: int = 0
    #: a change of membership: whether this node is sending its part now, and what it sent in the last one
    handing_off: bool = False
    handoff_keys: int = 0
    handoff_chunks: int = 0
    handoff_bytes: int = 0
    #: the node's table of every member's health, as gossip brought it
    health: tuple[HealthSeen, ...] = ()


@register(7)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Message):
    pass


# --- client-facing key-value operations ----------------------------------------------------------
# A zero quorum field or timeout means "the cluster default".


@register(10)
@dataclass(frozen=True, slots=True, kw_only=True)
class Get(Message):
    key: bytes
    n: int = 0
    r: int = 0
    timeout: float = 0.0


@register(11)
@dataclass(frozen=True, slots=True, kw_only=True)
class GetReply(Message):
    #: live sibling values (empty when the key is absent or deleted)
    values: tuple[bytes, ...]
    #: causal context to pass back with the next write of this key
    context: bytes


@register(12)
@dataclass(frozen=True, slots=True, kw_only=True)
class Put(Message):
    key: bytes
    value: bytes
    context: bytes = b""
    n: int = 0
    w: int = 0
    timeout: float = 0.0


@register(13)
@dataclass(frozen=True, slots=True, kw_only=True)
class Delete(Message):
    key: bytes
    context: bytes = b""
    n: int = 0
    w: int = 0
    timeout: float = 0.0


@register(14)
@dataclass(frozen=True, slots=True, kw_only=True)
class PutReply(Message):
    #: causal context of the version just written
    context: bytes


# --- replica-level operations, sent by a coordinating node ----------------------------------------


@register(20)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaRead(Message):
    key: bytes


@register(21)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaState(Message):
    #: encoded sibling set, empty bytes when the replica has nothing for the key
    state: bytes


@register(22)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaWrite(Message):
    key: bytes
    state: bytes
    #: id of the node this write is really meant for, when the receiver only keeps it as a hint
    hint_for: str = ""


@register(23)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaPurge(Message):
    """Remove ``key`` if its local state is exactly the tombstone-only ``state`` given."""

    key: bytes
    state: bytes


@register(24)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaPurgeReply(Message):
    purged: bool


@register(29)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaPrune(Message):
    """Drop ``actors`` (dead epochs of nodes) from the contexts of ``key``'s versions, unless a version the
    receiver holds was made by one of them (see dynamr.store.pruning)."""

    key: bytes
    actors: tuple[str, ...]


@register(25)
@dataclass(frozen=True, slots=True, kw_only=True)
class ListKeys(Message):
    """Live keys (not only deleted) that this node's own replica holds under ``prefix``, in key order, at
    most ``limit``, starting past ``after`` (to page through); with their live values if ``values``."""

    prefix: bytes
    limit: int = 10000
    after: bytes = b""
    values: bool = False


@register(26)
@dataclass(frozen=True, slots=True, kw_only=True)
class ListKeysReply(Message):
    keys: tuple[bytes, ...]
    #: True when there were more than ``limit``
    truncated: bool = False
    #: each key's live values (siblings), when asked for
    values: tuple[tuple[bytes, ...], ...] = ()


# --- anti-entropy between replicas (see dynamr.store.antientropy and dynamr.store.merkle) ----------------


@register(15)
@dataclass(frozen=True, slots=True, kw_only=True)
class TreeRequest(Message):
    """The leaves of the receiver's copy of the keys and chunks it shares with ``peer`` (the sender)."""

    peer: str


@register(16)
@dataclass(frozen=True, slots=True, kw_only=True)
class TreeReply(Message):
    keys: tuple[int, ...]
    chunks: tuple[int, ...]


@register(17)
@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentRequest(Message):
    """The keys (with their digests) and chunk ids in some leaves of the receiver's shared set with ``peer``."""

    peer: str
    key_segments: tuple[int, ...] = ()
    chunk_segments: tuple[int, ...] = ()


@register(18)
@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentReply(Message):
    keys: tuple[bytes, ...]
    digests: tuple[int, ...]
    chunks: tuple[bytes, ...]


@register(19)
@dataclass(frozen=True, slots=True, kw_only=True)
class StatesRequest(Message):
    """The receiver's replica states of ``keys``; the reply may cover only the first ones (``StatesReply``
    says how many) so it stays well inside one message: the sender asks again for the rest."""

    keys: tuple[bytes, ...]


@register(27)
@dataclass(frozen=True, slots=True, kw_only=True)
class StatesReply(Message):
    #: encoded sibling sets of the first ``len(states)`` keys asked for (empty bytes: none here)
    states: tuple[bytes, ...]


@register(8)
@dataclass(frozen=True, slots=True, kw_only=True)
class RunExchange(Message):
    """Admin: run an anti-entropy exchange now, with ``peer`` (or with every peer that is up, in turn)."""

    peer: str = ""


@register(9)
@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeReply(Message):
    #: the peers exchanged with, and the keys and chunks repaired
    peers: tuple[str, ...]
    keys: int
    chunks: int


@register(38)
@dataclass(frozen=True, slots=True, kw_only=True)
class StatesOffer(Message):
    """Handoff: keys with the digests of their versions' dots (dynamr.store.merkle.key_digest); the reply
    names those the receiver lacks or holds other versions of."""

    keys: tuple[bytes, ...]
    digests: tuple[int, ...]


@register(39)
@dataclass(frozen=True, slots=True, kw_only=True)
class StatesWanted(Message):
    keys: tuple[bytes, ...]


@register(28)
@dataclass(frozen=True, slots=True, kw_only=True)
class MergeStates(Message):
    """Merge each state into the receiver's replica of its key (anti-entropy's repair)."""

    keys: tuple[bytes, ...]
    states: tuple[bytes, ...]


# --- chunks: immutable, content-addressed blobs (see dynamr.store.chunks) ------------------------------


@register(30)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkPut(Message):
    """Client-facing: store a chunk on its replicas (the receiving node coordinates)."""

    chunk_id: bytes
    data: bytes
    n: int = 0
    w: int = 0
    timeout: float = 0.0


@register(31)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkStore(Message):
    """Replica-level: keep this chunk (as a hint for ``hint_for`` when set)."""

    chunk_id: bytes
    data: bytes
    hint_for: str = ""


@register(32)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRead(Message):
    """Replica-level: bytes [offset, offset+length) of a chunk (length -1: to the end), verified first."""

    chunk_id: bytes
    offset: int = 0
    length: int = -1


@register(33)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkData(Message):
    data: bytes
    #: size of the whole chunk
    size: int


@register(34)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkHas(Message):
    chunk_ids: tuple[bytes, ...]


@register(35)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkHasReply(Message):
    chunk_ids: tuple[bytes, ...]


@register(36)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkSweep(Message):
    """Delete local chunks not in ``keep`` that were stored more than ``older_than`` seconds ago."""

    keep: tuple[bytes, ...]
    older_than: float


@register(37)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkSweepReply(Message):
    deleted: int
    kept: int
