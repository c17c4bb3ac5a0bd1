"""One node's local replica: what it stores for each key, its hints, its tombstone index, its epoch.

Tables (see :mod:`dynamr.store.engine`):

- ``data``: key -> encoded sibling state, for keys this node is a preferred replica of;
- ``hints``: (key, owner) -> state this node keeps for a down ``owner`` until it can hand it over;
- ``tombstones``: keys whose state is deletes only (candidates for purging);
- ``meta``: the node's epoch and a "running" marker.

The *actor id* that names this node in version vectors is ``node_id@epoch``. The epoch is new whenever
the data directory is new, so a wiped node never mints a dot an earlier incarnation used; it is also
renewed after an unclean stop when commits are not synced before acknowledging (they may be lost).

Methods named ``op_*`` build engine operations (run in a write transaction); the others read directly.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator, Mapping

from dynamr.store import versions
from dynamr.store.engine import Engine, Operation, WriteTxn
from dynamr.store.versions import Sibling, State

_KEYLEN = struct.Struct(">H")


def hint_key(key: bytes, owner: str) -> bytes:
    return _KEYLEN.pack(len(key)) + key + owner.encode()


def split_hint_key(raw: bytes) -> tuple[bytes, str]:
    (length,) = _KEYLEN.unpack_from(raw)
    return raw[2:2 + length], raw[2 + length:].decode()


class Replica:
    def __init__(self, engine: Engine, node_id: str, *, durable_commits: bool = True) -> None:
        self.engine = engine
        self.node_id = node_id
        self.epoch, self.renewed_epoch = self._open_epoch(durable_commits)
        self.actor = f"{node_id}@{self.epoch}"

    def _open_epoch(self, durable_commits: bool) -> tuple[str, bool]:
        def op(txn: WriteTxn) -> tuple[str, bool]:
            epoch = txn.get("meta", b"epoch")
            unclean = txn.get("meta", b"running") is not None
            renew = epoch is None or (unclean and not durable_commits)
            if renew:
                epoch = secrets.token_hex(4).encode()
                txn.put("meta", b"epoch", epoch)
            txn.put("meta", b"running", b"1")
            assert epoch is not None
            return epoch.decode(), renew

        result: tuple[str, bool] = self.engine.apply([op])[0]
        self.engine.sync()
        return result

    def mark_clean_stop(self) -> None:
        self.engine.apply([lambda txn: txn.delete("meta", b"running")])
        self.engine.sync()

    # --- reads ---------------------------------------------------------------------------------------

    def read(self, key: bytes) -> State:
        """Everything this node knows of a key: its own replica joined with hints it holds for others."""
        state = versions.decode_state(self.engine.get("data", key) or b"")
        hinted = [versions.decode_state(raw) for _, raw in self.engine.scan("hints", _KEYLEN.pack(len(key)) + key)]
        return versions.merge(state, *hinted) if hinted else state

    def hints(self) -> Iterator[tuple[bytes, str, State]]:
        for raw_key, raw in self.engine.scan("hints"):
            key, owner = split_hint_key(raw_key)
            yield key, owner, versions.decode_state(raw)

    def live_keys(self, prefix: bytes, limit: int,
                  after: bytes = b"") -> tuple[list[tuple[bytes, tuple[bytes, ...]]], bool]:
        """Keys under ``prefix`` (and past ``after``) with a live value here, own data or hints, in key order,
        each with its live values; at most ``limit``, and whether there were more."""
        found: dict[bytes, State] = {}
        for key, raw in self.engine.scan("data", prefix, after):
            if key == after:
                continue
            state = versions.decode_state(raw)
            if versions.live_values(state):
                found[key] = state
            if len(found) > limit:
                break
        for key, _, state in self.hints():
            if key.startswith(prefix) and key > after and versions.live_values(state):
                found[key] = versions.merge(found[key], state) if key in found else state
        keys = sorted(found)
        return [(k, versions.live_values(found[k])) for k in keys[:limit]], len(keys) > limit

    def tombstone_keys(self) -> list[bytes]:
        return [key for key, _ in self.engine.scan("tombstones")]

    # --- write operations ----------------------------------------------------------------------------

    def op_coordinate(self, key: bytes, context: Mapping[str, int], value: bytes | None) -> Operation:
        """Mint a new version from a client write and store it; the operation returns the new state."""

        def op(txn: WriteTxn) -> State:
            local = versions.decode_state(txn.get("data", key) or b"")
            state, _ = versions.write(local, context, self.actor, value)
            _store(txn, key, state)
            return state

        return op

    def op_merge(self, key: bytes, incoming: State, hint_for: str = "") -> Operation:
        """Merge a state sent by a coordinator (or handed off) into the replica, or into a hint."""

        def op(txn: WriteTxn) -> State:
            if hint_for:
                hkey = hint_key(key, hint_for)
                merged = versions.merge(versions.decode_state(txn.get("hints", hkey) or b""), incoming)
                txn.put("hints", hkey, versions.encode_state(merged))
                return merged
            raw = txn.get("data", key)
            current = versions.decode_state(raw or b"")
            merged = versions.merge(current, incoming)
            if raw is None or versions.dots(merged) != versions.dots(current):
                _store(txn, key, merged)
            return merged

        return op

    def op_drop_hint(self, key: bytes, owner: str, delivered: State) -> Operation:
        """Remove a hint once its owner has it, unless newer writes reached the hint meanwhile."""
        delivered_dots = versions.dots(delivered)

        def op(txn: WriteTxn) -> bool:
            hkey = hint_key(key, owner)
            raw = txn.get("hints", hkey)
            if raw is None:
                return True
            if versions.dots(versions.decode_state(raw)) <= delivered_dots:
                txn.delete("hints", hkey)
                return True
            return False

        return op

    def op_prune(self, key: bytes, actors: frozenset[str]) -> Operation:
        """Drop dead-epoch ``actors`` from the contexts of a key's versions (see ``versions.prune``), unless
        a version here (own data or hint) was made by one of them. Returns whether anything changed."""

        def op(txn: WriteTxn) -> bool:
            raw = txn.get("data", key)
            if raw is None:
                return False
            for _, hraw in txn.scan("hints", _KEYLEN.pack(len(key)) + key):
                if versions.prune(versions.decode_state(hraw), actors) is None:
                    return False
            pruned = versions.prune(versions.decode_state(raw), actors)
            if pruned is None:
                return False
            encoded = versions.encode_state(pruned)
            if encoded != raw:
                txn.put("data", key, encoded)
            return encoded != raw

        return op

    def op_purge(self, key: bytes, expected: State) -> Operation:
        """Forget a deleted key everywhere on this node if its state is exactly the tombstones expected."""
        expected_dots = versions.dots(expected)

        def op(txn: WriteTxn) -> bool:
            if not versions.tombstone_only(expected):
                return False
            purged = False
            raw = txn.get("data", key)
            if raw is not None and versions.dots(versions.decode_state(raw)) == expected_dots:
                txn.delete("data", key)
                txn.delete("tombstones", key)
                purged = True
            for hkey, hraw in txn.scan("hints", _KEYLEN.pack(len(key)) + key):
                if split_hint_key(hkey)[0] == key and versions.dots(versions.decode_state(hraw)) <= expected_dots:
                    txn.delete("hints", hkey)
                    purged = True
            return purged

        return op


def _store(txn: WriteTxn, key: bytes, state: tuple[Sibling, ...]) -> None:
    txn.put("data", key, versions.encode_state(state))
    if versions.tombstone_only(state):
        txn.put("tombstones", key, b"")
    elif txn.get("tombstones", key) is not None:
        txn.delete("tombstones", key)
