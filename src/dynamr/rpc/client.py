"""The RPC client side: multiplexed connections and a pool that reconnects.

:class:`Connection` carries many concurrent calls on one authenticated TCP stream, matching replies to
calls by request id; each call has its own deadline (a timer, not a wrapper task, to stay cheap on the hot
path). :class:`TcpTransport` keeps one connection per peer address, opens it on first use, and opens a new
one after the old one broke, so a restarted node is reachable again without any action from the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from typing import TypeVar

from dynamr.errors import (
    ConnectFailedError,
    DeadlineExceededError,
    DynamrError,
    ProtocolError,
    UnavailableError,
    error_from_code,
)
from dynamr.rpc import auth, codec
from dynamr.rpc.messages import Message
from dynamr.rpc.transport import Address, Transport

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Message)


def describe(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


class Connection:
    """One authenticated stream to a peer, carrying concurrent calls."""

    def __init__(self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 frame_bytes: int, max_message_bytes: int) -> None:
        self.address = address
        self._reader = reader
        self._writer = writer
        self._frame_bytes = frame_bytes
        self._max_message_bytes = max_message_bytes
        self._pending: dict[int, asyncio.Future[codec.Envelope]] = {}
        self._ids = itertools.count(1)
        self._closed: DynamrError | None = None
        self._reader_task = asyncio.create_task(self._read_replies())

    @classmethod
    async def open(cls, address: Address, secret: bytes, *, timeout: float, frame_bytes: int,
                   max_message_bytes: int, ssl_context: ssl.SSLContext | None = None) -> Connection:
        peer = describe(address)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address[0], address[1], ssl=ssl_context, limit=2 * frame_bytes),
                timeout)
        except TimeoutError as exc:
            raise ConnectFailedError(f"could not connect to {peer} within {timeout:.1f}s") from exc
        except OSError as exc:
            raise ConnectFailedError(f"could not connect to {peer}: {exc.strerror or exc}") from exc
        try:
            await auth.client_handshake(reader, writer, secret, peer, timeout=timeout)
        except (OSError, RuntimeError) as exc:  # TLS errors, a transport closed under us: unreachable
            writer.close()
            raise ConnectFailedError(f"could not talk to {peer}: {exc}") from exc
        except BaseException:
            writer.close()
            raise
        return cls(address, reader, writer, frame_bytes=frame_bytes, max_message_bytes=max_message_bytes)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def call(self, msg: Message, timeout: float) -> Message:
        """Send one request and wait for its reply. Every failure is a :class:`DynamrError`:
        :class:`ConnectFailedError` when nothing of the request went out (safe to send elsewhere),
        :class:`UnavailableError` when the connection broke after, :class:`DeadlineExceededError`."""
        peer = describe(self.address)
        if self._closed is not None:
            raise ConnectFailedError(f"connection to {peer} is closed ({self._closed}); nothing was sent")
        payload = codec.encode_message(codec.REQUEST, 0, msg)  # size check before allocating an id
        if len(payload) > self._max_message_bytes:
            raise codec.message_size_error(len(payload), self._max_message_bytes)
        request_id = next(self._ids)
        payload = codec.encode_message(codec.REQUEST, request_id, msg)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[codec.Envelope] = loop.create_future()
        self._pending[request_id] = future
        timer = loop.call_later(timeout, self._expire, request_id, type(msg).__name__, timeout)
        try:
            try:
                if self._writer.is_closing():  # asyncio would drop the bytes silently, uvloop would raise
                    raise ConnectionResetError("the transport is closed")
                self._writer.writelines(codec.frame(payload, self._frame_bytes))
            except (OSError, RuntimeError) as exc:  # the transport closed under us (uvloop: RuntimeError)
                raise ConnectFailedError(f"connection to {peer} closed before the request went out: {exc}") from exc
            if self._writer.transport.get_write_buffer_size() > 4 * self._frame_bytes:
                # a peer that stopped reading (paused) must not hold the caller past its deadline
                try:
                    await asyncio.wait_for(self._writer.drain(), timeout)
                except TimeoutError:
                    raise DeadlineExceededError(f"{peer} did not take {type(msg).__name__} within "
                                                f"{timeout:.2f}s (it stopped reading)") from None
            envelope = await future
        except (OSError, RuntimeError) as exc:
            raise UnavailableError(f"connection to {peer} broke: {exc}") from exc
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
        if envelope.message is None:  # an error reply, or a reply whose fields failed their checks
            raise error_from_code(envelope.error_code, envelope.error_message)
        return envelope.message

    def _expire(self, request_id: int, name: str, timeout: float) -> None:
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_exception(DeadlineExceededError(
                f"no reply from {describe(self.address)} to {name} within {timeout:.2f}s"))

    async def _read_replies(self) -> None:
        error: DynamrError
        try:
            while True:
                payload = await codec.read_payload(self._reader, self._frame_bytes, self._max_message_bytes)
                envelope = codec.decode_envelope(payload)
                future = self._pending.pop(envelope.request_id, None)
                if future is not None and not future.done():
                    future.set_result(envelope)
        except (asyncio.IncompleteReadError, OSError, RuntimeError):
            error = UnavailableError(f"connection to {describe(self.address)} closed")
        except ProtocolError as exc:
            log.warning("dropping connection to %s: %s", describe(self.address), exc)
            error = exc
        except asyncio.CancelledError:
            error = UnavailableError(f"connection to {describe(self.address)} was closed locally")
        self._fail(error)

    def _fail(self, error: DynamrError) -> None:
        self._closed = error
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(UnavailableError(str(error)) if not isinstance(error, UnavailableError)
                                     else error)
        self._writer.close()

    async def close(self) -> None:
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


class TcpTransport(Transport):
    """A pool of connections, one per peer, opened lazily and reopened after a failure."""

    def __init__(self, secret: bytes, *, frame_bytes: int = 1 << 20, max_message_bytes: int = 64 << 20,
                 connect_timeout: float = 2.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self._secret = secret
        self._frame_bytes = frame_bytes
        self._max_message_bytes = max_message_bytes
        self._connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._connections: dict[Address, Connection] = {}
        self._connecting: dict[Address, asyncio.Future[Connection]] = {}

    async def _connection(self, address: Address, timeout: float) -> Connection:
        conn = self._connections.get(address)
        if conn is not None and not conn.closed:
            return conn
        opening = self._connecting.get(address)
        if opening is None:
            # its own task: a caller that gives up (a hedged call that lost) does not abort the opening that
            # others wait for
            opening = asyncio.ensure_future(self._open(address, timeout))
            self._connecting[address] = opening
            opening.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(opening)

    async def _open(self, address: Address, timeout: float) -> Connection:
        try:
            conn = await Connection.open(address, self._secret, timeout=min(timeout, self._connect_timeout),
                                         frame_bytes=self._frame_bytes,
                                         max_message_bytes=self._max_message_bytes, ssl_context=self._ssl)
        finally:
            self._connecting.pop(address, None)
        self._connections[address] = conn
        return conn

    async def call(self, address: Address, msg: Message, timeout: float) -> Message:
        pooled = self._connections.get(address)
        conn = await self._connection(address, timeout)
        try:
            return await conn.call(msg, timeout)
        except ConnectFailedError:
            if conn is not pooled:
                raise
            # a pooled connection the peer closed (reset, restart) before we noticed: nothing was sent,
            # so open a fresh one once
            if self._connections.get(address) is conn:
                del self._connections[address]
            conn = await self._connection(address, timeout)
            return await conn.call(msg, timeout)

    def drop(self, address: Address) -> None:
        conn = self._connections.pop(address, None)
        if conn is not None:
            task = asyncio.ensure_future(conn.close())
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def close(self) -> None:
        conns, self._connections = list(self._connections.values()), {}
        for conn in conns:
            await conn.close()
