"""Versions of a key as dotted version vectors: siblings, causal contexts, and how replicas merge.

Each stored version (a *sibling*) carries a *dot* ``(actor, counter)`` naming the write that made it and a
version vector ``past``: the causal context that write was given. A version is obsolete when another's
past covers its dot. This is what makes two writes without a context become siblings even when the same
node coordinates both (plain per-node vector clocks would let the second silently overwrite the first).

Actors are node ids joined with an *epoch* (see :mod:`dynamr.store.replica`): a node whose data directory
was wiped gets a new epoch, so it can never mint a dot that an old, lost write already used.

Everything here is pure: states in, states out. ``value is None`` marks a tombstone (a delete).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import NamedTuple

import msgpack

from dynamr.errors import BadRequestError
from dynamr.rpc.codec import pack_any

VersionVector = dict[str, int]


class Sibling(NamedTuple):
    actor: str
    counter: int
    past: Mapping[str, int]
    value: bytes | None

    @property
    def dot(self) -> tuple[str, int]:
        return (self.actor, self.counter)

    @property
    def is_tombstone(self) -> bool:
        return self.value is None


State = tuple[Sibling, ...]
EMPTY: State = ()


def covered(vv: Mapping[str, int], actor: str, counter: int) -> bool:
    return vv.get(actor, 0) >= counter


class Order(Enum):
    BEFORE = "before"
    AFTER = "after"
    EQUAL = "equal"
    CONCURRENT = "concurrent"


def compare(a: Mapping[str, int], b: Mapping[str, int]) -> Order:
    """The causal order of two version vectors (missing entries count as 0)."""
    a_le_b = all(count <= b.get(actor, 0) for actor, count in a.items() if count)
    b_le_a = all(count <= a.get(actor, 0) for actor, count in b.items() if count)
    if a_le_b and b_le_a:
        return Order.EQUAL
    if a_le_b:
        return Order.BEFORE
    if b_le_a:
        return Order.AFTER
    return Order.CONCURRENT


def join(*vvs: Mapping[str, int]) -> VersionVector:
    """The least upper bound of version vectors."""
    out: VersionVector = {}
    for vv in vvs:
        for actor, count in vv.items():
            if count > out.get(actor, 0):
                out[actor] = count
    return out


def merge(*states: Iterable[Sibling]) -> State:
    """Join replica states: the union of siblings, minus those another sibling's past covers."""
    by_dot: dict[tuple[str, int], Sibling] = {}
    for state in states:
        for sib in state:
            by_dot.setdefault(sib.dot, sib)
    survivors = [
        sib for sib in by_dot.values()
        if not any(other is not sib and covered(other.past, sib.actor, sib.counter)
                   for other in by_dot.values())
    ]
    survivors.sort(key=lambda s: s.dot)
    return tuple(survivors)


def context_of(state: Iterable[Sibling]) -> VersionVector:
    """The causal context a reader gets: every sibling's past joined with every sibling's dot."""
    state = tuple(state)
    return join(*(sib.past for sib in state), *({sib.actor: sib.counter} for sib in state))


def write(local: State, context: Mapping[str, int], actor: str, value: bytes | None) -> tuple[State, Sibling]:
    """Apply a client write at its coordinator: supersede what the context saw, keep the rest as siblings."""
    counter = context.get(actor, 0)
    for sib in local:
        counter = max(counter, sib.past.get(actor, 0), sib.counter if sib.actor == actor else 0)
    new = Sibling(actor, counter + 1, dict(context), value)
    kept = tuple(sib for sib in local if not covered(context, sib.actor, sib.counter))
    return merge(kept, (new,)), new


def dead_actors(state: State, epochs: Mapping[str, str]) -> frozenset[str]:
    """Actors in the contexts of ``state`` that name a dead epoch of a node (its current epoch, in
    ``epochs``, is another) and made none of its versions: they are what :func:`prune` may drop."""
    own = {sib.actor for sib in state}
    out = set()
    for sib in state:
        for actor in sib.past:
            node, _, epoch = actor.rpartition("@")
            current = epochs.get(node)
            if current is not None and epoch != current and actor not in own:
                out.add(actor)
    return frozenset(out)


def prune(state: State, actors: frozenset[str]) -> State | None:
    """``state`` with ``actors`` dropped from every context; None when a version was made by one of them
    (its dot must stay covered, so nothing may be dropped). Dots are unchanged: so is the digest
    anti-entropy compares."""
    if any(sib.actor in actors for sib in state):
        return None
    return tuple(sib._replace(past={a: c for a, c in sib.past.items() if a not in actors}) for sib in state)


def dots(state: Iterable[Sibling]) -> frozenset[tuple[str, int]]:
    return frozenset(sib.dot for sib in state)


def live_values(state: Iterable[Sibling]) -> tuple[bytes, ...]:
    return tuple(sib.value for sib in state if sib.value is not None)


def tombstone_only(state: State) -> bool:
    return bool(state) and all(sib.value is None for sib in state)


# --- encoding ---------------------------------------------------------------------------------------


def encode_state(state: State) -> bytes:
    if not state:
        return b""
    return pack_any([[s.actor, s.counter, dict(s.past), s.value] for s in state])


def decode_state(data: bytes) -> State:
    if not data:
        return EMPTY
    try:
        raw = msgpack.unpackb(data, use_list=False, raw=False)
        return tuple(Sibling(str(a), int(c), dict(p), v if v is None else bytes(v)) for a, c, p, v in raw)
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise BadRequestError(f"malformed replica state: {exc}") from exc


def dots_of(data: bytes) -> tuple[list[tuple[str, int]], bool]:
    """The dots of an encoded state, and whether any of its versions has a context, without building the
    versions (anti-entropy's scans read every key)."""
    if not data:
        return [], False
    try:
        raw = msgpack.unpackb(data, use_list=False, raw=False)
        return [(str(a), int(c)) for a, c, _, _ in raw], any(p for _, _, p, _ in raw)
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise BadRequestError(f"malformed replica state: {exc}") from exc


def encode_context(vv: Mapping[str, int]) -> bytes:
    return pack_any(dict(vv)) if vv else b""


def decode_context(data: bytes) -> VersionVector:
    """Decode a client-supplied causal context, rejecting anything that is not a version vector."""
    if not data:
        return {}
    try:
        raw = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise BadRequestError("malformed causal context: pass back the context a read returned") from exc
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in raw.items()):
        raise BadRequestError("malformed causal context: pass back the context a read returned")
    return raw
