"""The RPC server: accepts connections, authenticates them, and dispatches requests through a table.

A :class:`Dispatcher` maps message classes to async handlers (one table, no chain of ifs) and is shared
by the TCP server and the in-process transport. :class:`RpcServer` owns the listening socket: each
connection first passes the HMAC handshake (nothing is decoded before), then its requests run
concurrently, each answered with a reply or an error reply carrying a code and a message. A peer that
breaks the protocol is disconnected; the server keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dynamr.errors import DynamrError, ProtocolError
from dynamr.rpc import auth, codec
from dynamr.rpc.messages import Message

if TYPE_CHECKING:
    from dynamr.metrics import RequestStats

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Message]]
#: requests one connection may have in progress; past it, the server reads no more until one is answered
MAX_INFLIGHT = 256


class Dispatcher:
    """Routes a request message to the handler registered for its class."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._table: dict[type[Message], Handler] = {}
        #: where handled requests are counted and timed (see dynamr.metrics), if anywhere
        self.stats: RequestStats | None = None

    def register(self, cls: type[Message], handler: Handler) -> None:
        self._table[cls] = handler

    async def dispatch(self, msg: Message) -> Message:
        handler = self._table.get(type(msg))
        if handler is None:
            raise ProtocolError(f"{self.name} does not serve {type(msg).__name__} requests")
        stats = self.stats
        if stats is None:
            return await handler(msg)
        start = time.perf_counter()
        outcome = "internal"
        try:
            reply = await handler(msg)
            outcome = "ok"
            return reply
        except DynamrError as exc:
            outcome = exc.code
            raise
        finally:
            stats.observe(type(msg).__name__, time.perf_counter() - start, outcome)

    def error_reply(self, exc: BaseException, msg: Message) -> tuple[str, str]:
        """The (code, message) to send back for a handler's exception."""
        if isinstance(exc, DynamrError):
            return exc.code, str(exc)
        log.error("internal error in %s handling %s", self.name, type(msg).__name__, exc_info=exc)
        return "internal", (f"internal error in {self.name} handling {type(msg).__name__}: "
                            f"{type(exc).__name__}: {exc} (the node's log has the traceback)")


class ByteBudget:
    """Bytes of partly received messages held at once by all connections of a server. A connection that
    cannot get room within ``wait`` seconds is closed (its share is given back)."""

    def __init__(self, limit: int, wait: float = 30.0) -> None:
        self.limit = limit
        self.wait = wait
        self.used = 0
        self._changed = asyncio.Condition()

    async def take(self, amount: int) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.used + amount <= self.limit), self.wait)
            except TimeoutError:
                raise ProtocolError(f"too many large messages arriving at once (over {self.limit} bytes "
                                    "buffered): closing this connection") from None
            self.used += amount

    async def give(self, amount: int) -> None:
        async with self._changed:
            self.used -= amount
            self._changed.notify_all()


class RefusalLog:
    """Logs refused connections without flooding the log: the first at once, then one line per interval
    with how many more there were."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last = -float("inf")
        self._quiet = 0

    def refused(self, peer: object, why: str) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._quiet += 1
            return
        more = f" ({self._quiet} more refused since the last report)" if self._quiet else ""
        log.warning("refused connection from %s: it %s%s", peer, why, more)
        self._last, self._quiet = now, 0


class RpcServer:
    """A TCP listener serving one :class:`Dispatcher` to authenticated peers."""

    def __init__(self, dispatcher: Dispatcher, secret: bytes, *, frame_bytes: int,
                 max_message_bytes: int, ssl_context: ssl.SSLContext | None = None,
                 max_buffered_bytes: int = 256 << 20, max_connections: int = 1024) -> None:
        self.dispatcher = dispatcher
        self._secret = secret
        self._frame_bytes = frame_bytes
        self._max_message_bytes = max_message_bytes
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._budget = ByteBudget(max(max_buffered_bytes, max_message_bytes))
        self._max_connections = max_connections
        self._refusals = RefusalLog()
        self.refused_handshakes = 0
        self.refused_connections = 0

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str, port: int, *, serve: bool = True) -> None:
        """Bind and listen; without ``serve``, connections wait in the backlog until :meth:`serve`."""
        self._server = await asyncio.start_server(self._serve, host, port, ssl=self._ssl,
                                                  limit=2 * self._frame_bytes, reuse_address=True,
                                                  start_serving=serve)

    async def serve(self) -> None:
        """Start accepting connections (after ``start(serve=False)``)."""
        assert self._server is not None
        await self._server.start_serving()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        # Abort the sockets rather than cancel the handler tasks: the handlers then end on a closed
        # stream (CPython 3.11 logs a spurious error for a cancelled start_server handler).
        for writer in list(self._connections.values()):
            writer.transport.abort()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        peer = writer.get_extra_info("peername")
        try:
            if len(self._connections) > self._max_connections:
                self.refused_connections += 1
                self._refusals.refused(peer, f"is one connection too many (max_connections {self._max_connections})")
                return
            why = await auth.server_handshake(reader, writer, self._secret)
            if why:
                self.refused_handshakes += 1
                if why == auth.WRONG_SECRET:
                    self._refusals.refused(peer, why)
                else:
                    log.debug("connection from %s ended: it %s", peer, why)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return
            await self._serve_requests(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except ProtocolError as exc:
            log.warning("closing connection from %s: %s", peer, exc)
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _serve_requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        inflight: set[asyncio.Task[None]] = set()
        try:
            while True:
                payload = await codec.read_payload(reader, self._frame_bytes, self._max_message_bytes,
                                                   self._budget)
                envelope = codec.decode_envelope(payload)
                if envelope.kind != codec.REQUEST:
                    raise ProtocolError("a client may only send requests")
                if envelope.message is None:  # a field of the wrong type: refused before any handler runs
                    writer.writelines(codec.frame(codec.encode_error(
                        envelope.request_id, envelope.error_code, envelope.error_message), self._frame_bytes))
                    await writer.drain()
                    continue
                job = asyncio.create_task(self._answer(envelope.request_id, envelope.message, writer))
                inflight.add(job)
                job.add_done_callback(inflight.discard)
                if len(inflight) >= MAX_INFLIGHT:  # a peer that sends faster than it reads waits for its replies
                    await asyncio.wait(list(inflight), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for job in inflight:
                job.cancel()

    async def _answer(self, request_id: int, msg: Message, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self.dispatcher.dispatch(msg)
            payload = codec.encode_message(codec.REPLY, request_id, reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code, text = self.dispatcher.error_reply(exc, msg)
            payload = codec.encode_error(request_id, code, text)
        if len(payload) > self._max_message_bytes:
            payload = codec.encode_error(request_id, "frame_too_large",
                                         str(codec.message_size_error(len(payload), self._max_message_bytes)))
        if writer.is_closing():
            return
        writer.writelines(codec.frame(payload, self._frame_bytes))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
