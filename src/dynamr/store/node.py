"""A store node: the asyncio layer that carries out the ring, quorum and replica logic.

The node answers the messages of :mod:`dynamr.rpc.messages` through one dispatch table. A client request
for a key is coordinated by one of the key's preferred nodes (any other node forwards it to one): the
coordinator mints the new version in its own replica, then drives a :class:`~dynamr.store.quorum.WriteQuorum`
or :class:`~dynamr.store.quorum.ReadQuorum` over the transport until W or R replicas answered.
Background loops ping peers (failure detection), hand hints back to owners that returned, purge
tombstones that every node holds, and run anti-entropy (:mod:`dynamr.store.antientropy`). Writes reach
the engine through group commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from dynamr.config import ClusterSpec, Quorum
from dynamr.errors import (
    BadRequestError,
    ConfigError,
    DynamrError,
    KeyTooLargeError,
    QuorumError,
    StorageError,
    UnavailableError,
    ValueTooLargeError,
)
from dynamr.rpc import messages as m
from dynamr.rpc.server import Dispatcher
from dynamr.rpc.transport import Transport
from dynamr.store import gossip, membership, transfer, upkeep, versions
from dynamr.store.antientropy import AntiEntropy
from dynamr.store.blobs import BlobStore, MemoryBlobStore
from dynamr.store.chunks import ChunkService
from dynamr.store.commit import GroupCommitter
from dynamr.store.engine import Engine
from dynamr.store.failure import FailureDetector
from dynamr.store.health import StorageHealth
from dynamr.store.members import Members, load_state
from dynamr.store.membership import ClusterState
from dynamr.store.pruning import ContextPruner
from dynamr.store.quorum import Outcome, ReadQuorum, Send, WriteQuorum
from dynamr.store.replica import Replica
from dynamr.store.ring import Ring
from dynamr.store.versions import State

log = logging.getLogger(__name__)

#: most keys one ListKeys reply carries
LIST_LIMIT = 10000


class StoreNode:
    def __init__(self, spec: ClusterSpec, node_id: str, engine: Engine, transport: Transport,
                 clock: Callable[[], float] = time.monotonic, blobs: BlobStore | None = None, *,
                 state: ClusterState | None = None, address: tuple[str, int] | None = None) -> None:
        """``state``: the membership to start from (a node that just joined); else the one this node
        persisted, else the cluster file's nodes. ``address``: this node's, when the file does not list it."""
        self.spec = spec
        self.settings = spec.settings
        self.node_id = node_id
        self.address = address or spec.node(node_id).address
        state = state or load_state(engine) or membership.bootstrap(
            [(x.node_id, x.host, x.port) for x in spec.nodes],
            f"{spec.coordinator.host}:{spec.coordinator.port}" if spec.coordinator is not None else "")
        self.addresses: dict[str, tuple[str, int]] = {}
        self.ring = Ring(state.owners, self.settings.vnodes)
        #: while a change of membership moves data: the ring being moved to (writes go to both)
        self.pending_ring: Ring | None = None
        #: rings in use, numbered (each membership change that moves a ring gets the next number), and the
        #: writes running now (their replica sends and hints included) by the number they started under:
        #: a prepare phase waits for those of earlier rings
        self._rings: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        self._rings_number = 0
        self._writes: Counter[int] = Counter()
        #: what this node sent in a transition's stream phase
        self.handoff = transfer.Progress()
        self.transport = transport
        self.clock = clock
        self.replica = Replica(engine, node_id, durable_commits=self.settings.fsync == "always")
        self.blobs = blobs if blobs is not None else MemoryBlobStore()
        self.health = StorageHealth(node_id, clock)
        self.committer = GroupCommitter(engine, self.health.failed)
        #: each node's current epoch, as its answers to pings say (this node's own included)
        self.epochs: dict[str, str] = {node_id: self.replica.epoch}
        self.detector = FailureDetector(
            [], interval=self.settings.heartbeat_interval, now=clock(), threshold=self.settings.phi_threshold,
            pause=self.settings.failure_timeout - self.settings.heartbeat_interval)
        #: every member's health as gossip brought it; this node's record is rewritten each heartbeat round
        self.gossip = gossip.HealthTable(node_id)
        self._generation, self._beat, self._rng = int(time.time() * 1000), 0, random.Random()
        self.dispatcher = Dispatcher(f"node {node_id}")
        self._background: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._handoff_wakeup = asyncio.Event()
        #: extra handoff rounds run with the hints' (e.g. chunk hints); each returns how many it delivered
        self.handoff_rounds: list[Callable[[], Awaitable[int]]] = [functools.partial(upkeep.hand_off, self)]
        #: hints (keys and chunks) handed back to their owners since this node started
        self.hints_delivered = 0
        handlers: dict[type[m.Message], Callable[[Any], Awaitable[m.Message]]] = {
            m.Ping: self._on_ping,
            m.ClusterInfo: self._on_cluster_info,
            m.NodeStatus: self._on_status,
            m.Get: self._on_get,
            m.Put: self._on_put,
            m.Delete: self._on_delete,
            m.ReplicaRead: self._on_replica_read,
            m.ReplicaWrite: self._on_replica_write,
            m.ReplicaPurge: self._on_replica_purge,
            m.ListKeys: self._on_list_keys,
        }
        for cls, handler in handlers.items():
            self.dispatcher.register(cls, handler)
        self.chunks = ChunkService(self)
        self.anti_entropy = AntiEntropy(self)
        self.pruner = ContextPruner(self)
        self.apply_membership(state)
        self.members = Members(self, state)
        if self.replica.renewed_epoch:
            log.info("node %s starts with a new epoch %s", node_id, self.replica.epoch)

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self._loops = [asyncio.create_task(self._every(s.heartbeat_interval, self._heartbeat)),
                       asyncio.create_task(self._handoff_loop()),
                       asyncio.create_task(self._every(s.tombstone_reap_interval, self._reap)),
                       asyncio.create_task(self.anti_entropy.run()),
                       asyncio.create_task(self.anti_entropy.scrub_forever())]
        if s.fsync == "periodic":
            self._loops.append(asyncio.create_task(self._every(s.fsync_interval, self._sync)))
        self.members.start()

    async def stop(self) -> None:
        self.members.close()
        for task in [*self._loops, *self._background]:
            task.cancel()
        for task in [*self._loops, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.committer.close()
        self.chunks.close()
        self.replica.mark_clean_stop()
        self.replica.engine.close()

    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await action()
            except Exception:
                log.exception("background task %s failed", getattr(action, "__name__", action))

    async def _sync(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.replica.engine.sync)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- membership (see dynamr.store.members) ------------------------------------------------------

    def apply_membership(self, state: ClusterState) -> None:
        """Use a cluster state: who the peers are, the ring, and the ring being moved to."""
        self.addresses = state.addresses()
        self.addresses.setdefault(self.node_id, self.address)
        rings = (state.owners, state.pending if state.moving else ())
        if rings != self._rings:
            self._rings, self._rings_number = rings, self._rings_number + 1
        self.ring = Ring(state.owners, self.settings.vnodes)
        self.pending_ring = Ring(state.pending, self.settings.vnodes) if state.moving else None
        self.detector.set_peers([p for p in self.addresses if p != self.node_id], self.clock())
        self.gossip.forget(self.addresses)

    async def drain_earlier_writes(self) -> None:
        """Wait until no write coordinated under earlier rings (before this transition, or before it started
        again) is running, nor any of its replica writes and hints (each ends within the replica timeout).
        A replica message that lands later is a copy the other old owners that acknowledged the write have
        too: they stream it."""
        while any(count for number, count in self._writes.items() if number != self._rings_number):
            await asyncio.sleep(0.02)

    def wake_handoff(self) -> None:
        self._handoff_wakeup.set()

    # --- talking to peers ----------------------------------------------------------------------------

    async def call_peer(self, node_id: str, msg: m.Message, timeout: float) -> m.Message:
        """Call a peer, keeping the failure detector informed."""
        if node_id not in self.addresses:
            raise UnavailableError(f"node {node_id} is not a member of the cluster (any more)")
        try:
            reply = await self.transport.call(self.addresses[node_id], msg, timeout)
        except UnavailableError:
            if self.detector.unreachable(node_id):
                log.info("peer %s is unreachable; marked down", node_id)
            self.transport.drop(self.addresses[node_id])
            raise
        if self.detector.heard_from(node_id, self.clock(), beat=isinstance(msg, m.Ping)):
            self._peer_back(node_id)
        return reply

    def _peer_back(self, node_id: str) -> None:
        log.info("peer %s is up again", node_id)
        self._handoff_wakeup.set()

    async def _heartbeat(self) -> None:
        timeout = self.settings.failure_timeout / 2

        version, author = self.members.state.key()
        self._beat += 1
        self.gossip.set_own(gossip.own_record(self, self._generation, self._beat), self.clock())
        peers = [p for p in self.addresses if p != self.node_id]
        carry, table = gossip.gossip_targets(peers, self._rng), self.gossip.records()

        async def ping(peer: str) -> None:
            with contextlib.suppress(DynamrError):
                reply = await self.call_peer(peer, m.Ping(sender=self.node_id, version=version, author=author,
                                                          health=table if peer in carry else ()), timeout)
                if isinstance(reply, m.Pong) and reply.node_id == peer:
                    self.epochs[peer] = reply.epoch
                    self.gossip.merge(reply.health, self.clock(), self.addresses)
                    self._spawn(self.members.heard(peer, reply.version, reply.author))

        await asyncio.gather(*(ping(p) for p in peers))
        now = self.clock()
        for peer in self.detector.tick(now):
            log.info("peer %s has been silent for %.1fs; marked down", peer, self.detector.silence(peer, now))
        self.members.tick()

    # --- validation ----------------------------------------------------------------------------------

    def check_key(self, key: bytes) -> None:
        if not key:
            raise BadRequestError("keys must not be empty")
        if len(key) > self.settings.max_key_bytes:
            raise KeyTooLargeError(
                f"key of {len(key)} bytes exceeds the {self.settings.max_key_bytes}-byte limit")

    def quorum_for(self, n: int, r: int = 0, w: int = 0) -> Quorum:
        default = self.settings.quorum
        n = n or default.n
        if n > len(self.ring.node_ids):
            raise BadRequestError(f"N={n} replicas need {n} nodes; the cluster has {len(self.ring.node_ids)}")
        try:
            return Quorum(n=n, r=r or min(default.r, n), w=w or min(default.w, n))
        except ConfigError as exc:
            raise BadRequestError(str(exc)) from exc

    def timeout_for(self, requested: float) -> float:
        return requested if requested > 0 else self.settings.request_timeout

    # --- client-facing handlers ----------------------------------------------------------------------

    async def _on_ping(self, msg: m.Ping) -> m.Pong:
        if msg.sender in self.addresses and self.detector.heard_from(msg.sender, self.clock(), beat=True):
            self._peer_back(msg.sender)
        if msg.version and msg.sender != self.node_id and self.members.state.member(msg.sender) is not None:
            # a member that left is told so too (it is no peer any more, but it stops only once it knows)
            self._spawn(self.members.heard(msg.sender, msg.version, msg.author))
        version, author = self.members.state.key()
        if msg.health:
            self.gossip.merge(msg.health, self.clock(), self.addresses)
        return m.Pong(node_id=self.node_id, epoch=self.replica.epoch, version=version, author=author,
                      health=self.gossip.records() if msg.health else ())

    async def _on_cluster_info(self, msg: m.ClusterInfo) -> m.ClusterInfoReply:
        q = self.settings.quorum
        state = self.members.state
        return m.ClusterInfoReply(
            nodes=tuple((n, h, p) for n, (h, p) in sorted(self.addresses.items())), n=q.n, r=q.r, w=q.w,
            vnodes=self.settings.vnodes, down=tuple(sorted(self.detector.down)),
            max_key_bytes=self.settings.max_key_bytes, max_value_bytes=self.settings.max_value_bytes,
            coordinator=state.coordinator, owners=state.owners, version=state.version)

    async def _on_status(self, msg: m.NodeStatus) -> m.NodeStatusReply:
        engine = self.replica.engine
        peers = [p for p in self.addresses if p != self.node_id]
        ae = self.anti_entropy
        return m.NodeStatusReply(
            node_id=self.node_id, epoch=self.replica.epoch, keys=engine.count("data"),
            hints=engine.count("hints"), tombstones=engine.count("tombstones"),
            up=tuple(p for p in peers if self.detector.is_up(p)), down=tuple(sorted(self.detector.down)),
            chunks=await self.chunks._run(self.blobs.count), storage_error=self.health.problem,
            handing_off=self.handoff.running, handoff_keys=self.handoff.keys, handoff_chunks=self.handoff.chunks,
            handoff_bytes=self.handoff.bytes, exchanges=ae.exchanges, keys_repaired=ae.keys_repaired,
            chunks_repaired=ae.chunks_repaired, exchanging_with=ae.exchanging_with,
            last_exchange_age=ae.last_exchange_age(), chunks_scrubbed=ae.chunks_scrubbed,
            chunks_corrupt=ae.chunks_corrupt, health=self.gossip.seen(self.clock()))

    async def _on_get(self, msg: m.Get) -> m.GetReply:
        self.check_key(msg.key)
        quorum = self.quorum_for(msg.n, r=msg.r)
        state = await self.coordinate_read(msg.key, quorum, self.timeout_for(msg.timeout))
        return m.GetReply(values=versions.live_values(state),
                          context=versions.encode_context(versions.context_of(state)))

    async def _on_put(self, msg: m.Put) -> m.Message:
        self.check_key(msg.key)
        if len(msg.value) > self.settings.max_value_bytes:
            raise ValueTooLargeError(
                f"value of {len(msg.value)} bytes exceeds the {self.settings.max_value_bytes}-byte limit "
                "(max_value_bytes); store large data as a file")
        return await self._write(msg, msg.key, msg.value, msg.context, msg.n, msg.w, msg.timeout)

    async def _on_delete(self, msg: m.Delete) -> m.Message:
        self.check_key(msg.key)
        return await self._write(msg, msg.key, None, msg.context, msg.n, msg.w, msg.timeout)

    async def _write(self, msg: m.Put | m.Delete, key: bytes, value: bytes | None, context: bytes,
                     n: int, w: int, timeout: float) -> m.Message:
        quorum = self.quorum_for(n, w=w)
        ctx = versions.decode_context(context)
        timeout = self.timeout_for(timeout)
        preferred = self.ring.preference_list(key, quorum.n)
        if self.node_id not in preferred:
            return await self._forward(msg, preferred, timeout)
        state = await self.coordinate_write(key, ctx, value, quorum, timeout)
        return m.PutReply(context=versions.encode_context(versions.context_of(state)))

    async def _forward(self, msg: m.Message, preferred: tuple[str, ...], timeout: float) -> m.Message:
        """Hand a write to a preferred node of its key: only they mint versions for it."""
        deadline = self.clock() + timeout
        ordered = sorted(preferred, key=lambda p: p in self.detector.down)
        last: DynamrError | None = None
        for node in ordered:
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            try:
                return await self.call_peer(node, msg, remaining)
            except (UnavailableError, StorageError) as exc:  # not applied there: the next one may take it
                last = exc
        raise QuorumError(f"no preferred replica of the key could coordinate the write "
                          f"({', '.join(preferred)} unreachable{': ' + str(last) if last else ''})")

    # --- coordination --------------------------------------------------------------------------------

    async def coordinate_write(self, key: bytes, context: dict[str, int], value: bytes | None,
                               quorum: Quorum, timeout: float) -> State:
        try:
            state: State = await self.committer.submit(self.replica.op_coordinate(key, context, value))
        except StorageError as exc:  # nothing was minted nor sent: another preferred node can coordinate
            raise StorageError(f"node {self.node_id} cannot store the write ({exc}); it was not applied, so "
                               "another replica may coordinate it") from exc
        encoded = versions.encode_state(state)

        async def local(hint_for: str) -> None:
            if hint_for:  # already stored as a replica; only a hint held for another node needs a write
                await self.committer.submit(self.replica.op_merge(key, state, hint_for))

        await self.replicate(key, quorum, timeout, local=local, what=f"write of key {key!r}",
                             message=lambda hint_for: m.ReplicaWrite(key=key, state=encoded, hint_for=hint_for))
        return state

    async def replicate(self, key: bytes, quorum: Quorum, timeout: float, *,
                        local: Callable[[str], Awaitable[None]], message: Callable[[str], m.Message],
                        what: str) -> None:
        """Drive a sloppy write quorum for ``key``: ``local(hint_for)`` stores on this node,
        ``message(hint_for)`` is what other targets get. Returns once W targets acknowledged."""
        machine = WriteQuorum(self.ring.walk(key), quorum.n, quorum.w, self.detector)
        done = asyncio.Event()
        replica_timeout = min(self.settings.replica_timeout, timeout)
        hinted: set[str] = set()

        joint = self.pending_ring  # a change of membership moves data: the new owners get the write too
        number = self._rings_number  # counted in _writes while it runs (see drain_earlier_writes)

        async def hint_here(owner: str) -> None:
            """No fallback node is left to stand in for ``owner`` (a cluster of N nodes): this node keeps the
            hint itself, so the owner gets the write when it is back instead of only on a later read."""
            self._writes[number] += 1
            try:
                await local(owner)
            except DynamrError as exc:
                log.warning("%s: could not keep a hint for %s: %s", what, owner, exc)
            finally:
                self._writes[number] -= 1

        def hint_unplaced() -> None:
            for owner in machine.unplaced:
                if owner != self.node_id and owner not in hinted:
                    hinted.add(owner)
                    self._spawn(hint_here(owner))

        changed = asyncio.Event()
        inflight = 0
        new_owners: set[str] = set()
        extra: list[asyncio.Task[bool]] = []

        async def send(target: Send) -> None:
            nonlocal inflight
            inflight += 1
            self._writes[number] += 1
            try:
                if target.node == self.node_id:
                    await local(target.hint_for)
                else:
                    await self.call_peer(target.node, message(target.hint_for), replica_timeout)
                machine.on_ack(target.node)
            except DynamrError as exc:
                log.debug("%s to %s failed: %s", what, target.node, exc)
                for retry in machine.on_failure(target.node):
                    self._spawn(send(retry))
                hint_unplaced()
            finally:
                inflight -= 1
                self._writes[number] -= 1
                changed.set()
            if machine.outcome is not Outcome.PENDING:
                done.set()

        def new_acks() -> set[str]:
            return (set(machine.acked) & new_owners) | {t.get_name() for t in extra if t.done() and t.result()}

        self._writes[number] += 1
        if joint is not None:
            before = self.ring.preference_list(key, quorum.n)
            new_owners = set(joint.preference_list(key, quorum.n))
            for owner in sorted(new_owners - set(before)):
                task = asyncio.create_task(self._to_new_owner(owner, local, message, replica_timeout, what),
                                           name=owner)
                task.add_done_callback(lambda _: changed.set())
                extra.append(task)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            for target in machine.start():
                self._spawn(send(target))
            hint_unplaced()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
        finally:
            self._writes[number] -= 1
        if machine.outcome is not Outcome.SUCCEEDED:
            raise QuorumError(
                f"{what} reached {len(machine.acked)} of the W={quorum.w} replicas required "
                f"within {timeout:.1f}s (acknowledged by: {', '.join(machine.acked) or 'none'}; "
                f"failed: {', '.join(machine.failed) or 'none'}); the write may still appear later")
        # joint quorum: W of the new owners too, or a read from them right after the switch could miss it
        while joint is not None and len(new_acks()) < quorum.w:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or (inflight == 0 and all(t.done() for t in extra)):
                raise QuorumError(f"{what} reached {len(new_acks())} of the W={quorum.w} new owners required "
                                  "while the cluster's membership changes; the write may still appear later")
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def _to_new_owner(self, target: str, local: Callable[[str], Awaitable[None]],
                            message: Callable[[str], m.Message], timeout: float, what: str) -> bool:
        """A write for a new owner of its key: sent (True), or kept here as a hint for it (the transition
        does not finish while such hints are left)."""
        try:
            if target == self.node_id:
                await local("")
            else:
                await self.call_peer(target, message(""), timeout)
            return True
        except DynamrError as exc:
            log.debug("%s to new owner %s failed (%s): kept as a hint", what, target, exc)
            with contextlib.suppress(DynamrError):
                await local(target)
            return False

    async def coordinate_read(self, key: bytes, quorum: Quorum, timeout: float) -> State:
        machine = ReadQuorum(self.ring.walk(key), quorum.n, quorum.r, self.detector)
        replies: dict[str, State] = {}
        done = asyncio.Event()
        replica_timeout = min(self.settings.replica_timeout, timeout)
        finished = asyncio.Event()
        pending = 0

        async def ask(node: str) -> None:
            nonlocal pending
            pending += 1
            try:
                if node == self.node_id:
                    replies[node] = self.replica.read(key)
                else:
                    reply = await self.call_peer(node, m.ReplicaRead(key=key), replica_timeout)
                    assert isinstance(reply, m.ReplicaState)
                    replies[node] = versions.decode_state(reply.state)
                machine.on_reply(node)
            except DynamrError as exc:
                log.debug("replica read of %r from %s failed: %s", key, node, exc)
                for nxt in machine.on_failure(node):
                    self._spawn(ask(nxt))
            finally:
                pending -= 1
                if machine.outcome is not Outcome.PENDING:
                    done.set()
                if pending == 0 and not machine.outstanding:
                    finished.set()

        for node in machine.start():
            self._spawn(ask(node))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        if machine.outcome is not Outcome.SUCCEEDED:
            raise QuorumError(
                f"read of key {key!r} got {len(machine.replied)} of the R={quorum.r} replies required "
                f"within {timeout:.1f}s (failed: {', '.join(machine.failed) or 'none'})")
        merged = versions.merge(*replies.values())
        self._spawn(self._read_repair(key, merged, replies, finished, quorum.n, replica_timeout))
        return merged

    async def _read_repair(self, key: bytes, merged: State, replies: dict[str, State],
                           finished: asyncio.Event, n: int, timeout: float) -> None:
        """Once every asked replica answered (or the timeout passed), bring stale preferred ones up to date."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), timeout)
        merged = versions.merge(merged, *replies.values())
        target_dots = versions.dots(merged)
        preferred = self.ring.preference_list(key, n)
        stale = [node for node, state in list(replies.items())
                 if node in preferred and versions.dots(state) != target_dots]
        if not stale:
            return
        encoded = versions.encode_state(merged)
        for node in stale:
            log.debug("read repair of %r on %s", key, node)
            try:
                if node == self.node_id:
                    await self.committer.submit(self.replica.op_merge(key, merged))
                else:
                    await self.call_peer(node, m.ReplicaWrite(key=key, state=encoded), timeout)
            except DynamrError as exc:
                log.debug("read repair of %r on %s failed: %s", key, node, exc)

    # --- replica-level handlers ----------------------------------------------------------------------

    async def _on_replica_read(self, msg: m.ReplicaRead) -> m.ReplicaState:
        return m.ReplicaState(state=versions.encode_state(self.replica.read(msg.key)))

    def owns(self, key: bytes) -> bool:
        """Whether this node is a replica of ``key``, in the ring or in the ring being moved to."""
        n = self.settings.quorum.n
        return self.node_id in self.ring.preference_list(key, n) or (
            self.pending_ring is not None and self.node_id in self.pending_ring.preference_list(key, n))

    async def _on_replica_write(self, msg: m.ReplicaWrite) -> m.Ack:
        self.check_key(msg.key)
        state = versions.decode_state(msg.state)
        if msg.hint_for and msg.hint_for not in self.addresses:
            raise BadRequestError(f"hint for unknown node {msg.hint_for!r}")
        await self.committer.submit(self.replica.op_merge(msg.key, state, msg.hint_for))
        return m.Ack()

    async def _on_list_keys(self, msg: m.ListKeys) -> m.ListKeysReply:
        items, truncated = self.replica.live_keys(msg.prefix, max(0, min(msg.limit, LIST_LIMIT)), msg.after)
        if msg.values:  # a page of values stays well inside one message: the caller asks for the rest
            budget, size = self.settings.max_message_bytes // 4, 0
            for i, (key, values) in enumerate(items):
                size += len(key) + sum(len(v) + 8 for v in values)
                if size > budget and i > 0:
                    items, truncated = items[:i], True
                    break
        return m.ListKeysReply(keys=tuple(k for k, _ in items), truncated=truncated,
                               values=tuple(v for _, v in items) if msg.values else ())

    async def _on_replica_purge(self, msg: m.ReplicaPurge) -> m.ReplicaPurgeReply:
        purged = await self.committer.submit(self.replica.op_purge(msg.key, versions.decode_state(msg.state)))
        return m.ReplicaPurgeReply(purged=bool(purged))

    # --- hinted handoff and tombstone purging (dynamr.store.upkeep) ---------------------------------------

    async def _handoff_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._handoff_wakeup.wait(), self.settings.handoff_interval)
            self._handoff_wakeup.clear()
            for round_ in self.handoff_rounds:
                try:
                    self.hints_delivered += await round_()
                except Exception:
                    log.exception("hinted handoff round failed")

    async def _reap(self) -> None:
        await self.reap_tombstones()
        await self.pruner.run()

    async def reap_tombstones(self, batch: int = 500) -> int:
        """Purge deletes that every node holds (see :mod:`dynamr.store.upkeep`)."""
        return await upkeep.reap_tombstones(self, batch)
