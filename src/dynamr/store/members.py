"""Membership on a node: the asyncio shell of :mod:`dynamr.store.membership`.

It keeps the node's :class:`~dynamr.store.membership.MembershipNode`, persists every state it adopts
(``meta`` table, before acting on it), and carries out the machine's instructions:

- **gossip** rides on the failure detector's pings: a ping and its pong carry the sender's state version,
  and the side with the newer state pushes it (``StatePush``);
- **phase work** starts when a state asks for it: in ``prepare`` the node writes jointly and waits until
  the writes it started before have ended; in ``stream`` it sends its part of the data
  (:mod:`dynamr.store.transfer`); then it acknowledges to the claimant, again each heartbeat until the
  state shows it;
- **admin requests** (``ClusterAdmin``, ``JoinCluster``) are made here if this node is the claimant, else
  handed to the claimant it sees;
- after a transition, data the node no longer owns is deleted once every member has the new state, and a
  node that left stops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dynamr.config import NodeAddress, StoreSettings
from dynamr.errors import BadRequestError, DeadlineExceededError, DynamrError, UnavailableError
from dynamr.rpc import messages as m
from dynamr.rpc.codec import pack_record, unpack_record
from dynamr.rpc.transport import Transport
from dynamr.store import membership as ms
from dynamr.store import transfer
from dynamr.store.client import VIEW_TTL
from dynamr.store.engine import Engine
from dynamr.store.membership import Change, ClusterState, MembershipError, MembershipNode

if TYPE_CHECKING:
    from dynamr.store.node import StoreNode

log = logging.getLogger(__name__)

STATE_KEY = b"cluster_state"
#: seconds a node that left keeps serving after every member knows (clients refresh their view of the
#: cluster every VIEW_TTL seconds: meanwhile they may still send it requests, which it forwards)
DEPART_GRACE = 2 * VIEW_TTL


def load_state(engine: Engine) -> ClusterState | None:
    """The state this node persisted, if it ever adopted one."""
    raw = engine.get("meta", STATE_KEY)
    return ms.from_record(unpack_record(m.ClusterStateRecord, raw)) if raw else None


class Members:
    def __init__(self, node: StoreNode, state: ClusterState) -> None:
        self.node = node
        self.machine = MembershipNode(node.node_id, state)
        #: the state version each peer last said it has (pings and pongs)
        self.peer_versions: dict[str, int] = {}
        #: set when this node has left the cluster and every member knows: the process stops
        self.departed = asyncio.Event()
        self._work: asyncio.Task[None] | None = None
        self._work_for: tuple[int, str] = (0, "")
        self._cleaned = state.version if not state.moving else 0
        self._left_at = 0.0
        self._ticking: asyncio.Task[None] | None = None
        self._adopting = asyncio.Lock()
        #: (version, author) of the state the node uses (persisted and applied)
        self._applied = state.key()
        for cls, handler in ((m.StatePush, self._on_push), (m.PhaseAck, self._on_ack),
                             (m.JoinCluster, self._on_join), (m.ClusterAdmin, self._on_admin)):
            node.dispatcher.register(cls, handler)

    def start(self) -> None:
        """Pick up the phase work of a transition this node was in when it stopped (from its checkpoint)."""
        self._start_work(self.state)

    @property
    def state(self) -> ClusterState:
        return self.machine.state

    def up(self) -> set[str]:
        node = self.node
        return {p for p in node.addresses if node.detector.is_up(p)} | {node.node_id}

    # --- gossip --------------------------------------------------------------------------------------

    async def heard(self, peer: str, version: int, author: str) -> None:
        """A peer's ping or pong said which state it has."""
        self.peer_versions[peer] = version
        await self._carry(self.machine.on_digest(peer, version, author))

    def tick(self) -> None:
        """Every heartbeat: acknowledgements again, clean-up and departure when their time has come. Runs in
        the background (never holding up the pings), one at a time."""
        if self._ticking is not None and not self._ticking.done():
            return
        self._ticking = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        await self._carry([i for i in self.machine.tick(self.up()) if not isinstance(i, ms.SendDigest)])
        await self._maybe_clean_up()
        self._maybe_depart()

    async def _carry(self, instructions: list[ms.Instruction]) -> None:
        node = self.node
        for ins in instructions:
            try:
                if isinstance(ins, ms.SendState):
                    await self._send_state(ins.to, ins.state)
                elif isinstance(ins, ms.SendAck):
                    await node.call_peer(ins.to, m.PhaseAck(node_id=node.node_id, version=ins.version,
                                                            phase=ins.phase), node.settings.replica_timeout)
                elif isinstance(ins, ms.Adopted):
                    await self._adopted(ins.state)
            except DynamrError as exc:
                log.debug("membership: %s failed: %s", type(ins).__name__, exc)

    async def _send_state(self, to: str, state: ClusterState) -> None:
        node = self.node
        msg = m.StatePush(state=ms.to_record(state))
        if to in node.addresses:
            await node.call_peer(to, msg, node.settings.replica_timeout)
            return
        member = state.member(to)  # a member that left: no peer any more, but it must learn that it left
        if member is not None:
            await node.transport.call((member.host, member.port), msg, node.settings.replica_timeout)

    async def _adopted(self, _: ClusterState) -> None:
        """Persist the newest state, then act on it. One at a time, always the machine's latest: two
        adoptions that overlap must not leave the older one on disk or in use."""
        node = self.node
        async with self._adopting:
            state = self.state
            if state.key() <= self._applied:
                return
            raw = pack_record(ms.to_record(state))
            await node.committer.submit(lambda txn: txn.put("meta", STATE_KEY, raw))
            log.info("cluster state %d: owners %s%s", state.version, ",".join(state.owners),
                     f", moving to {','.join(state.pending)} ({state.phase})" if state.moving else "")
            node.apply_membership(state)
            self._applied = state.key()
            self._start_work(state)

    # --- phase work ----------------------------------------------------------------------------------

    def _start_work(self, state: ClusterState) -> None:
        key = (state.since, state.phase)
        if not state.moving or self.node.node_id not in state.participants() or key == self._work_for:
            return
        if self._work is not None:
            self._work.cancel()
        self._work_for = key
        self._work = asyncio.create_task(self._do_phase(state))

    async def _do_phase(self, state: ClusterState) -> None:
        node = self.node
        while True:
            try:
                if state.phase == "prepare":
                    await node.drain_earlier_writes()
                else:
                    await transfer.stream(node, state)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("membership: %s work failed; trying again", state.phase)
                await asyncio.sleep(1.0)
        log.info("membership: my part of %s (state %d) is done", state.phase, state.since)
        await self._carry(self.machine.phase_done(state.since, state.phase, self.up()))

    # --- after a transition --------------------------------------------------------------------------

    def _everyone_has(self, version: int) -> bool:
        return all(self.peer_versions.get(p, 0) >= version for p in self.node.addresses if p != self.node.node_id)

    async def _maybe_clean_up(self) -> None:
        state = self.state
        if state.moving or self._cleaned >= state.version or not self._everyone_has(state.version):
            return
        self._cleaned = state.version
        dropped = await transfer.drop_unowned(self.node, state)
        if dropped:
            log.info("membership: dropped %d key(s) and chunk(s) this node no longer owns", dropped)

    def _maybe_depart(self) -> None:
        """A node that left stops once every member knows, and clients had time to see it (until then it
        forwards what reaches it)."""
        state = self.state
        if state.status(self.node.node_id) != "left" or not self._everyone_has(state.version):
            return
        now = time.monotonic()
        self._left_at = self._left_at or now
        if now - self._left_at >= DEPART_GRACE and not self.departed.is_set():
            log.info("node %s has left the cluster: stopping", self.node.node_id)
            self.departed.set()

    # --- handlers ------------------------------------------------------------------------------------

    async def _on_push(self, msg: m.StatePush) -> m.Ack:
        await self._carry(self.machine.on_state(ms.from_record(msg.state)))
        return m.Ack()

    async def _on_ack(self, msg: m.PhaseAck) -> m.Ack:
        await self._carry(self.machine.on_ack(msg.node_id, msg.version, msg.phase, self.up()))
        return m.Ack()

    async def _claimant_or_forward(self, msg: m.Message, change: Callable[[ClusterState, str], ClusterState]
                                   ) -> m.ClusterStateReply:
        node = self.node
        claimant = self.state.claimant(self.up())
        if claimant is None:
            raise MembershipError("no valid member is up to make the change; try again when one is")
        if claimant != node.node_id:
            reply = await node.call_peer(claimant, msg, node.settings.request_timeout)
            if not isinstance(reply, m.ClusterStateReply):
                raise BadRequestError(f"the claimant {claimant} answered {type(reply).__name__}")
            return reply
        await self._carry(self.machine.make(change))
        return m.ClusterStateReply(state=ms.to_record(self.state))

    async def _on_join(self, msg: m.JoinCluster) -> m.ClusterStateReply:
        settings = self.node.settings
        NodeAddress(node_id=msg.node_id, host=msg.host, port=msg.port)  # a valid id and port, or ConfigError
        if (msg.n, msg.vnodes) != (settings.quorum.n, settings.vnodes):
            raise MembershipError(f"node {msg.node_id} has n={msg.n} and vnodes={msg.vnodes}; the cluster has "
                                  f"n={settings.quorum.n} and vnodes={settings.vnodes}: start it with the "
                                  "cluster's settings")
        return await self._claimant_or_forward(
            msg, functools.partial(_register, node_id=msg.node_id, host=msg.host, port=msg.port))

    async def _on_admin(self, msg: m.ClusterAdmin) -> m.ClusterStateReply:
        n = self.node.settings.quorum.n
        if msg.action == "show":
            return m.ClusterStateReply(state=ms.to_record(self.state))
        if msg.action in ms.ACTIONS:
            return await self._claimant_or_forward(
                msg, functools.partial(_stage, change=Change(msg.action, msg.node_id), n=n))
        if msg.action == "unstage":
            return await self._claimant_or_forward(msg, ms.unstage)
        if msg.action == "commit":
            return await self._claimant_or_forward(msg, ms.commit)
        raise BadRequestError(f"unknown cluster change {msg.action!r} (join, leave, remove, unstage, commit)")

    def close(self) -> None:
        for task in (self._work, self._ticking):
            if task is not None:
                task.cancel()


def _register(state: ClusterState, me: str, *, node_id: str, host: str, port: int) -> ClusterState:
    return ms.register(state, me, node_id, host, port)


def _stage(state: ClusterState, me: str, *, change: Change, n: int) -> ClusterState:
    return ms.stage(state, me, change, n)


async def request_join(transport: Transport, seed: tuple[str, int], me: NodeAddress,
                       settings: StoreSettings) -> ClusterState:
    """Ask the cluster a seed belongs to for membership, until it answers; the state that registered
    this node (as joining). A refusal (settings that differ, an id taken) is raised at once."""
    msg = m.JoinCluster(node_id=me.node_id, host=me.host, port=me.port, n=settings.quorum.n,
                        vnodes=settings.vnodes)
    delay = 0.2
    while True:
        try:
            reply = await transport.call(seed, msg, settings.request_timeout)
            break
        except (UnavailableError, DeadlineExceededError) as exc:
            log.warning("cannot reach %s:%d to join (%s); trying again", seed[0], seed[1], exc)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)
    if not isinstance(reply, m.ClusterStateReply):
        raise BadRequestError(f"{seed[0]}:{seed[1]} answered a join with {type(reply).__name__}")
    return ms.from_record(reply.state)
