"""Every message that crosses the wire, as a small frozen dataclass with a stable numeric tag.

A message is encoded as its tag followed by its field values in declaration order (see
:mod:`dynamr.rpc.codec`), so adding a field at the end with a default keeps old peers readable. The
registry :data:`MESSAGE_TYPES` maps tags to classes; servers dispatch on the class through a table.

Store messages come in two groups: the client-facing ones (``Get``, ``Put``, ``Delete``, ``ClusterInfo``,
``NodeStatus``), which any node coordinates, and the replica-level ones a coordinator sends to the nodes
holding a key (``ReplicaRead``, ``ReplicaWrite``, ``ReplicaPurge``). Replica states travel as opaque bytes
(an encoded sibling set, see :mod:`dynamr.store.versions`), so this module stays free of store logic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

M = TypeVar("M", bound="Message")


class Message:
    """Base of all wire messages. Subclasses are registered with :func:`message`."""

    TAG: ClassVar[int] = -1
    FIELDS: ClassVar[tuple[str, ...]] = ()


MESSAGE_TYPES: dict[int, type[Message]] = {}


def message(tag: int) -> Any:
    """Class decorator: make a frozen, slotted, keyword-only dataclass and register it under ``tag``."""

    def wrap(cls: type[M]) -> type[M]:
        if tag in MESSAGE_TYPES:
            raise ValueError(f"message tag {tag} used twice ({MESSAGE_TYPES[tag].__name__}, {cls.__name__})")
        made = dataclass(frozen=True, slots=True, kw_only=True)(cls)
        made.TAG = tag
        made.FIELDS = tuple(f.name for f in dataclasses.fields(made))
        MESSAGE_TYPES[tag] = made
        return made

    return wrap


# --- liveness and cluster information -----------------------------------------------------------


@message(1)
class Ping(Message):
    sender: str = ""


@message(2)
class Pong(Message):
    node_id: str
    epoch: str


@message(3)
class ClusterInfo(Message):
    pass


@message(4)
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


@message(5)
class NodeStatus(Message):
    pass


@message(6)
class NodeStatusReply(Message):
    node_id: str
    epoch: str
    keys: int
    hints: int
    tombstones: int
    up: tuple[str, ...]
    down: tuple[str, ...]


@message(7)
class Ack(Message):
    pass


# --- client-facing key-value operations ----------------------------------------------------------
# A zero quorum field or timeout means "the cluster default".


@message(10)
class Get(Message):
    key: bytes
    n: int = 0
    r: int = 0
    timeout: float = 0.0


@message(11)
class GetReply(Message):
    #: live sibling values (empty when the key is absent or deleted)
    values: tuple[bytes, ...]
    #: causal context to pass back with the next write of this key
    context: bytes


@message(12)
class Put(Message):
    key: bytes
    value: bytes
    context: bytes = b""
    n: int = 0
    w: int = 0
    timeout: float = 0.0


@message(13)
class Delete(Message):
    key: bytes
    context: bytes = b""
    n: int = 0
    w: int = 0
    timeout: float = 0.0


@message(14)
class PutReply(Message):
    #: causal context of the version just written
    context: bytes


# --- replica-level operations, sent by a coordinating node ----------------------------------------


@message(20)
class ReplicaRead(Message):
    key: bytes


@message(21)
class ReplicaState(Message):
    #: encoded sibling set, empty bytes when the replica has nothing for the key
    state: bytes


@message(22)
class ReplicaWrite(Message):
    key: bytes
    state: bytes
    #: id of the node this write is really meant for, when the receiver only keeps it as a hint
    hint_for: str = ""


@message(23)
class ReplicaPurge(Message):
    """Remove ``key`` if its local state is exactly the tombstone-only ``state`` given."""

    key: bytes
    state: bytes


@message(24)
class ReplicaPurgeReply(Message):
    purged: bool
