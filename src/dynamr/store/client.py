"""The key-value client, async (:class:`AsyncClient`) and blocking (:class:`Client`).

The client learns the membership from any node (``ClusterInfo``), builds the same ring the nodes use,
and sends each request straight to a preferred node of its key (no extra hop). When that node cannot be
reached it tries the key's next preferred node; a write that may have been sent is not resent, so it is
never applied twice behind the caller's back. Reads and chunk writes (idempotent) are *hedged*: when the
first node has not answered within ``hedge_fraction`` of the timeout, the next one is asked too and the
first answer wins. A node that misses a deadline, or loses such a race, is *suspect*: later requests go
to the others first, and a background ping clears it as soon as it answers again (a paused or overloaded
node costs one slow request, not every request).

Reads return a :class:`GetResult`: the live sibling values and the causal context. Pass the context back
with the next write of the key to say "this replaces what I read"; writes without it become siblings of
whatever is there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dynamr.errors import (
    BadRequestError,
    ClusterNotFoundError,
    ConnectFailedError,
    CorruptDataError,
    DataLostError,
    DeadlineExceededError,
    DynamrError,
    KeyTooLargeError,
    NotFoundError,
    StorageError,
    UnavailableError,
    ValueTooLargeError,
)
from dynamr.rpc import messages as m
from dynamr.rpc.client import TcpTransport, describe
from dynamr.rpc.transport import Address, Transport
from dynamr.store.chunks import chunk_id
from dynamr.store.ring import Ring

T = TypeVar("T")
R = TypeVar("R", bound=m.Message)
Key = bytes | str


def as_key(key: Key) -> bytes:
    return key.encode() if isinstance(key, str) else key


@dataclass(frozen=True, slots=True)
class GetResult:
    """What a read found: zero, one or several (concurrent) values, and the context to write back."""

    values: tuple[bytes, ...]
    context: bytes

    @property
    def found(self) -> bool:
        return bool(self.values)

    @property
    def value(self) -> bytes | None:
        """The value, None when absent; raises when concurrent writes left several siblings."""
        if len(self.values) > 1:
            raise BadRequestError(
                f"the key has {len(self.values)} concurrent values (siblings); read .values and write the "
                "resolved value back with this result's context")
        return self.values[0] if self.values else None


@dataclass(frozen=True, slots=True)
class ClusterView:
    nodes: dict[str, Address]
    ring: Ring
    n: int
    max_key_bytes: int
    max_value_bytes: int
    coordinator: Address | None = None


#: seconds between pings of a suspect node
PROBE_INTERVAL = 0.5
#: seconds a client uses its view of the cluster before it asks again
VIEW_TTL = 5.0


class AsyncClient:
    def __init__(self, seeds: Sequence[Address], secret: bytes, *, timeout: float = 10.0,
                 transport: Transport | None = None, ssl_context: ssl.SSLContext | None = None,
                 hedge_fraction: float = 0.05) -> None:
        if not seeds:
            raise ClusterNotFoundError("no node address given")
        if not 0 < hedge_fraction <= 1:
            raise BadRequestError(f"hedge_fraction must be in (0, 1], got {hedge_fraction}")
        self._seeds = list(seeds)
        self._timeout = timeout
        self._hedge_after = max(0.02, hedge_fraction * timeout)
        self._transport = transport or TcpTransport(secret, ssl_context=ssl_context)
        self._view: ClusterView | None = None
        self._view_at = 0.0
        self._refresh: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        #: nodes that missed a deadline or lost a hedged race, with the task pinging them until they answer
        self._suspects: dict[str, asyncio.Task[None]] = {}

    async def __aenter__(self) -> AsyncClient:
        await self.cluster()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        for probe in self._suspects.values():
            probe.cancel()
        self._suspects.clear()
        await self._transport.close()

    async def cluster(self) -> ClusterView:
        """Membership and limits, from the first node that answers. Members join and leave, so a view older
        than ``VIEW_TTL`` seconds is fetched again in the background (meanwhile nodes forward what they do
        not own)."""
        view = self._view
        if view is not None:
            if time.monotonic() - self._view_at >= VIEW_TTL and (self._refresh is None or self._refresh.done()):
                self._view_at = time.monotonic()
                self._refresh = asyncio.ensure_future(self._refetch())
            return view
        async with self._lock:
            if self._view is None:
                self._view = await self._fetch_view()
                self._view_at = time.monotonic()
        return self._view

    async def _refetch(self) -> None:
        with contextlib.suppress(DynamrError):
            self._view = await self._fetch_view()

    async def _fetch_view(self) -> ClusterView:
        errors = []
        known = list(self._view.nodes.values()) if self._view is not None else []
        for seed in [*known, *(s for s in self._seeds if s not in known)]:
            try:
                info = await self._transport.call(seed, m.ClusterInfo(), self._timeout)
            except UnavailableError as exc:
                errors.append(str(exc))
                continue
            assert isinstance(info, m.ClusterInfoReply)
            nodes = {node_id: (host, port) for node_id, host, port in info.nodes}
            host, _, port = info.coordinator.rpartition(":")
            return ClusterView(nodes=nodes, ring=Ring(info.owners or nodes, info.vnodes), n=info.n,
                               max_key_bytes=info.max_key_bytes, max_value_bytes=info.max_value_bytes,
                               coordinator=(host, int(port)) if info.coordinator else None)
        raise UnavailableError("no node of the cluster answered: " + "; ".join(errors))

    @property
    def timeout(self) -> float:
        """Seconds a request waits for its answer, unless the call gives its own."""
        return self._timeout

    async def call_node(self, node_id_or_address: str | Address, msg: m.Message,
                        timeout: float | None = None) -> m.Message:
        """Send any message to one node (by id or address); for tools and tests."""
        if isinstance(node_id_or_address, str):
            address = (await self.cluster()).nodes[node_id_or_address]
        else:
            address = node_id_or_address
        return await self._transport.call(address, msg, timeout or self._timeout)

    # --- routing: suspects first to go, reads hedged ---------------------------------------------------

    @property
    def suspects(self) -> set[str]:
        """Nodes this client avoids for now."""
        return set(self._suspects)

    def _order(self, targets: Sequence[str]) -> list[str]:
        """Targets in preference order, suspects last."""
        return [t for t in targets if t not in self._suspects] + [t for t in targets if t in self._suspects]

    def _suspect(self, view: ClusterView, node_id: str) -> None:
        if node_id not in self._suspects:
            self._suspects[node_id] = asyncio.ensure_future(self._probe(view, node_id))

    async def _probe(self, view: ClusterView, node_id: str) -> None:
        """Ping a suspect until it answers, then trust it again."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await self._transport.call(view.nodes[node_id], m.Ping(), min(self._timeout, 2.0))
            except DynamrError:
                continue
            self._suspects.pop(node_id, None)
            return

    async def _send(self, key: bytes, msg: m.Message, n: int, *, retry_sent: bool) -> m.Message:
        """Send to the key's preferred nodes, suspects last. ``retry_sent``: the request is idempotent, so
        it is hedged and resent after any failure; otherwise only a request certainly not sent moves on."""
        view = await self.cluster()
        targets = self._order(view.ring.preference_list(key, n or view.n))
        if retry_sent:
            return await self._hedged(view, targets, msg)
        last: DynamrError | None = None
        for node_id in targets:
            try:
                return await self._transport.call(view.nodes[node_id], msg, self._timeout)
            except ConnectFailedError as exc:
                last = exc
            except StorageError as exc:  # its disk refused to mint the version: not applied, try the next
                last = exc
                continue
            except DeadlineExceededError:
                self._suspect(view, node_id)  # the next requests go elsewhere first
                raise
            self._transport.drop(view.nodes[node_id])
        assert last is not None
        raise UnavailableError(f"no replica of the key could be reached ({last})")

    async def _hedged(self, view: ClusterView, targets: list[str], msg: m.Message) -> m.Message:
        """Ask the first target; ask the next too when it is slow or failed; the first answer wins."""
        waiting: dict[asyncio.Task[m.Message], str] = {}
        errors: list[str] = []
        remaining = list(targets)

        def ask_next() -> None:
            node_id = remaining.pop(0)
            waiting[asyncio.ensure_future(self._transport.call(view.nodes[node_id], msg, self._timeout))] = node_id

        ask_next()
        try:
            while waiting:
                done, _ = await asyncio.wait(waiting, timeout=self._hedge_after if remaining else None,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:  # the first is slow: hedge (and trust it less)
                    for node_id in waiting.values():
                        self._suspect(view, node_id)
                    ask_next()
                    continue
                for task in done:
                    node_id = waiting.pop(task)
                    error = UnavailableError("call abandoned") if task.cancelled() else task.exception()
                    if error is None:
                        return task.result()
                    if not isinstance(error, DynamrError) or isinstance(error, BadRequestError | NotFoundError):
                        raise error
                    errors.append(f"{node_id}: {error}")
                    if isinstance(error, DeadlineExceededError):
                        self._suspect(view, node_id)
                    elif isinstance(error, UnavailableError):
                        self._transport.drop(view.nodes[node_id])
                if not waiting and remaining:
                    ask_next()
        finally:
            for task in waiting:
                task.cancel()
        raise UnavailableError("no replica of the key answered (" + "; ".join(errors) + ")")

    async def _check(self, key: bytes, value: bytes | None = None) -> None:
        view = await self.cluster()
        if not key:
            raise BadRequestError("keys must not be empty")
        if len(key) > view.max_key_bytes:
            raise KeyTooLargeError(f"key of {len(key)} bytes exceeds the cluster's {view.max_key_bytes}-byte limit")
        if value is not None and len(value) > view.max_value_bytes:
            raise ValueTooLargeError(
                f"value of {len(value)} bytes exceeds the cluster's {view.max_value_bytes}-byte limit "
                "(max_value_bytes); store large data as a file")

    async def get(self, key: Key, *, r: int = 0, n: int = 0) -> GetResult:
        k = as_key(key)
        await self._check(k)
        reply = await self._send(k, m.Get(key=k, r=r, n=n, timeout=self._timeout * 0.9), n, retry_sent=True)
        assert isinstance(reply, m.GetReply)
        return GetResult(values=reply.values, context=reply.context)

    async def put(self, key: Key, value: bytes | str, *, context: bytes = b"", w: int = 0, n: int = 0) -> bytes:
        """Write a value; returns the causal context of the new version."""
        k = as_key(key)
        v = value.encode() if isinstance(value, str) else value
        await self._check(k, v)
        reply = await self._send(k, m.Put(key=k, value=v, context=context, w=w, n=n,
                                          timeout=self._timeout * 0.9), n, retry_sent=False)
        assert isinstance(reply, m.PutReply)
        return reply.context

    async def delete(self, key: Key, *, context: bytes = b"", w: int = 0, n: int = 0) -> bytes:
        k = as_key(key)
        await self._check(k)
        reply = await self._send(k, m.Delete(key=k, context=context, w=w, n=n,
                                             timeout=self._timeout * 0.9), n, retry_sent=False)
        assert isinstance(reply, m.PutReply)
        return reply.context

    # --- chunks ----------------------------------------------------------------------------------------

    async def put_chunk(self, data: bytes, *, w: int = 0, n: int = 0) -> bytes:
        """Store an immutable chunk on its replicas; returns its id (content address). Idempotent."""
        cid = chunk_id(data)
        view = await self.cluster()
        if len(data) > view.max_value_bytes:
            raise ValueTooLargeError(f"chunk of {len(data)} bytes exceeds the cluster's {view.max_value_bytes}-byte "
                                     "limit (max_value_bytes)")
        await self._send(cid, m.ChunkPut(chunk_id=cid, data=data, w=w, n=n, timeout=self._timeout * 0.9), n,
                         retry_sent=True)
        return cid

    async def read_chunk(self, cid: bytes, offset: int = 0, length: int = -1) -> bytes:
        """Bytes of a chunk from the first replica that has a good copy; bad preferred copies are repaired.

        Raises :class:`DataLostError` naming what each node answered when no replica could serve it.
        """
        view = await self.cluster()
        preferred = view.ring.preference_list(cid, view.n)
        failures: dict[str, str] = {}
        repairable: list[str] = []
        for node_id in self._order(list(view.ring.walk(cid))):
            try:
                reply = await self._transport.call(view.nodes[node_id], m.ChunkRead(
                    chunk_id=cid, offset=offset, length=length), self._timeout)
            except (NotFoundError, CorruptDataError) as exc:
                failures[node_id] = "corrupt" if isinstance(exc, CorruptDataError) else "missing"
                if node_id in preferred:
                    repairable.append(node_id)
                continue
            except DynamrError as exc:
                failures[node_id] = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, DeadlineExceededError):
                    self._suspect(view, node_id)
                continue
            assert isinstance(reply, m.ChunkData)
            data = reply.data
            if offset == 0 and length < 0 and chunk_id(data) != cid:
                failures[node_id] = "corrupted in transit"
                continue
            if failures:  # a copy was bad or missing: make sure every preferred replica has a good one
                await self._repair_chunk(cid, node_id, data if len(data) == reply.size else None, repairable,
                                         [p for p in preferred if p != node_id and p not in failures])
            return data
        raise DataLostError(f"chunk {cid.hex()} could not be read from any replica ("
                            + ", ".join(f"{k}: {v}" for k, v in failures.items()) + ")")

    async def _repair_chunk(self, cid: bytes, good: str, data: bytes | None, bad: list[str],
                            unchecked: list[str]) -> None:
        """Store a good copy on the replicas known bad, and on those not checked that lack one."""
        view = await self.cluster()
        try:
            if unchecked:
                holders = await self.chunk_holders([cid])
                bad = [*bad, *(n for n in unchecked if n not in holders[cid])]
            if not bad:
                return
            if data is None:
                reply = await self._transport.call(view.nodes[good], m.ChunkRead(chunk_id=cid), self._timeout)
                assert isinstance(reply, m.ChunkData)
                data = reply.data
            for node_id in bad:
                await self._transport.call(view.nodes[node_id], m.ChunkStore(chunk_id=cid, data=data), self._timeout)
        except DynamrError:
            pass  # repair is best effort: the read itself succeeded

    async def chunk_holders(self, cids: Sequence[bytes]) -> dict[bytes, list[str]]:
        """Which live nodes actually hold each chunk."""
        view = await self.cluster()
        holders: dict[bytes, list[str]] = {cid: [] for cid in cids}

        async def ask(node_id: str) -> None:
            try:
                reply = await self._transport.call(view.nodes[node_id], m.ChunkHas(chunk_ids=tuple(cids)),
                                                   min(self._timeout, 3.0))
            except DynamrError:
                return
            assert isinstance(reply, m.ChunkHasReply)
            for cid in reply.chunk_ids:
                holders[cid].append(node_id)

        await asyncio.gather(*(ask(node_id) for node_id in view.nodes))
        for nodes in holders.values():
            nodes.sort()
        return holders

    async def sweep_chunks(self, keep: Sequence[bytes],
                           older_than: float) -> dict[str, m.ChunkSweepReply | DynamrError]:
        """Ask every node to delete chunks not in ``keep`` stored more than ``older_than`` seconds ago."""
        return await self.call_every_node(m.ChunkSweep(keep=tuple(keep), older_than=older_than),
                                          m.ChunkSweepReply, self._timeout)

    async def node_status(self) -> dict[str, m.NodeStatusReply | DynamrError]:
        """Each node's status, or the error that kept it from answering."""
        return await self.call_every_node(m.NodeStatus(), m.NodeStatusReply, min(self._timeout, 3.0))

    async def call_every_node(self, msg: m.Message, expect: type[R], timeout: float) -> dict[str, R | DynamrError]:
        """Send one message to every node at once; each node's reply, or the error it ended with."""
        view = await self.cluster()

        async def one(address: Address) -> R | DynamrError:
            try:
                reply = await self._transport.call(address, msg, timeout)
            except DynamrError as exc:
                return exc
            assert isinstance(reply, expect)
            return reply

        results = await asyncio.gather(*(one(a) for a in view.nodes.values()))
        return dict(zip(view.nodes, results, strict=True))

    async def scan_replicas(self, prefix: bytes, *, values: bool = True
                            ) -> AsyncIterator[tuple[str, bytes, tuple[bytes, ...]]]:
        """Every live key under ``prefix`` on every node's own replica (hints included), with that replica's
        live values (none unless ``values``): (node, key, values), a node's keys in order, page by page. An
        administrative scan (a superset of what quorum reads see); a node that cannot answer raises, so
        nothing is silently missed."""
        view = await self.cluster()
        for node, address in view.nodes.items():
            after = b""
            while True:
                try:
                    reply = await self._transport.call(
                        address, m.ListKeys(prefix=prefix, after=after, values=values), self._timeout)
                except DynamrError as exc:
                    raise type(exc)(f"node {node} could not list its keys: {exc}") from exc
                assert isinstance(reply, m.ListKeysReply)
                for key, held in zip(reply.keys, reply.values if values else [()] * len(reply.keys), strict=True):
                    yield node, key, held
                if not reply.truncated or not reply.keys:
                    break
                after = reply.keys[-1]

    async def keys_on_nodes(self, prefix: Key = b"", limit: int = 10000) -> dict[str, tuple[bytes, ...]]:
        """Live keys under ``prefix`` held by each node's own replica (an administrative scan: it reads every
        node's whole local table; a node that cannot answer is an error, not an empty list)."""
        raw = prefix.encode() if isinstance(prefix, str) else prefix
        replies = await self.call_every_node(m.ListKeys(prefix=raw, limit=limit), m.ListKeysReply, self._timeout)
        out: dict[str, tuple[bytes, ...]] = {}
        for node, reply in replies.items():
            if isinstance(reply, DynamrError):
                raise reply
            out[node] = reply.keys
        return out


class Client:
    """Blocking wrapper around :class:`AsyncClient`, with its own event loop thread."""

    def __init__(self, seeds: Sequence[Address], secret: bytes, *, timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dynamr-client", daemon=True)
        self._thread.start()
        self._async = self._run(self._make(seeds, secret, timeout, ssl_context))

    @staticmethod
    async def _make(seeds: Sequence[Address], secret: bytes, timeout: float,
                    ssl_context: ssl.SSLContext | None) -> AsyncClient:
        return AsyncClient(seeds, secret, timeout=timeout, ssl_context=ssl_context)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of the async API (``self.async_client``) on this client's loop and wait for it."""
        return self._run(coro)

    def start(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start a coroutine of the async API on this client's loop; its future (cancel it if unwanted)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    @property
    def async_client(self) -> AsyncClient:
        """The :class:`AsyncClient` behind this client; use its coroutines through :meth:`run`."""
        return self._async

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def cluster(self) -> ClusterView:
        return self._run(self._async.cluster())

    def get(self, key: Key, *, r: int = 0, n: int = 0) -> GetResult:
        return self._run(self._async.get(key, r=r, n=n))

    def put(self, key: Key, value: bytes | str, *, context: bytes = b"", w: int = 0, n: int = 0) -> bytes:
        return self._run(self._async.put(key, value, context=context, w=w, n=n))

    def delete(self, key: Key, *, context: bytes = b"", w: int = 0, n: int = 0) -> bytes:
        return self._run(self._async.delete(key, context=context, w=w, n=n))

    def node_status(self) -> dict[str, m.NodeStatusReply | DynamrError]:
        return self._run(self._async.node_status())

    def call_node(self, node: str | Address, msg: m.Message, timeout: float | None = None) -> m.Message:
        return self._run(self._async.call_node(node, msg, timeout))

    def keys_on_nodes(self, prefix: Key = b"", limit: int = 10000) -> dict[str, tuple[bytes, ...]]:
        return self._run(self._async.keys_on_nodes(prefix, limit))


__all__ = ["AsyncClient", "Client", "GetResult", "describe"]
