"""The RPC layer over real TCP on loopback: authentication, framing limits, deadlines, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dynamr.errors import (
    AuthenticationError,
    DeadlineExceededError,
    FrameTooLargeError,
    QuorumError,
    RemoteError,
    UnavailableError,
)
from dynamr.rpc import messages as m
from dynamr.rpc.client import TcpTransport
from dynamr.rpc.server import Dispatcher, RpcServer

SECRET = b"s3cret"


class EchoService:
    def __init__(self) -> None:
        self.dispatcher = Dispatcher("echo")
        self.dispatcher.register(m.Ping, self.ping)
        self.dispatcher.register(m.Put, self.put)
        self.dispatcher.register(m.Get, self.get)
        self.stored: dict[bytes, bytes] = {}

    async def ping(self, msg: m.Ping) -> m.Pong:
        if msg.sender == "slow":
            await asyncio.sleep(5)
        if msg.sender == "crash":
            raise ZeroDivisionError("bug")
        if msg.sender == "quorum":
            raise QuorumError("not enough replicas")
        return m.Pong(node_id="echo", epoch=msg.sender)

    async def put(self, msg: m.Put) -> m.PutReply:
        self.stored[msg.key] = msg.value
        return m.PutReply(context=b"")

    async def get(self, msg: m.Get) -> m.GetReply:
        return m.GetReply(values=(self.stored.get(msg.key, b""),), context=b"")


@pytest.fixture
async def server() -> AsyncIterator[tuple[RpcServer, EchoService]]:
    service = EchoService()
    srv = RpcServer(service.dispatcher, SECRET, frame_bytes=1 << 20, max_message_bytes=16 << 20)
    await srv.start("127.0.0.1", 0)
    yield srv, service
    await srv.close()


@pytest.fixture
async def transport() -> AsyncIterator[TcpTransport]:
    t = TcpTransport(SECRET, max_message_bytes=16 << 20)
    yield t
    await t.close()


async def test_many_concurrent_calls_share_one_connection(server, transport) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    addr = ("127.0.0.1", srv.port)
    replies = await asyncio.gather(*(transport.call(addr, m.Ping(sender=str(i)), 5) for i in range(200)))
    assert [r.epoch for r in replies] == [str(i) for i in range(200)]
    assert len(transport._connections) == 1


async def test_bulk_value_travels_in_bounded_frames(server, transport) -> None:  # type: ignore[no-untyped-def]
    srv, service = server
    addr = ("127.0.0.1", srv.port)
    blob = bytes(range(256)) * (12 * 4096)  # 12 MiB: 12+ frames each way
    await transport.call(addr, m.Put(key=b"big", value=blob), 10)
    assert service.stored[b"big"] == blob
    reply = await transport.call(addr, m.Get(key=b"big"), 10)
    assert reply.values == (blob,)


async def test_message_over_the_limit_fails_on_the_client(server, transport) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    with pytest.raises(FrameTooLargeError, match="exceeds"):
        await transport.call(("127.0.0.1", srv.port), m.Put(key=b"k", value=b"x" * (17 << 20)), 10)
    assert (await transport.call(("127.0.0.1", srv.port), m.Ping(), 5)).node_id == "echo"


async def test_wrong_secret_is_refused_and_server_keeps_serving(server, transport) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    addr = ("127.0.0.1", srv.port)
    bad = TcpTransport(b"wrong")
    with pytest.raises(AuthenticationError, match="refused our cluster secret"):
        await bad.call(addr, m.Ping(), 5)
    await bad.close()
    assert srv.refused_handshakes == 1
    assert (await transport.call(addr, m.Ping(), 5)).node_id == "echo"


async def test_random_bytes_and_silence_do_not_hurt_the_server(server, transport) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    addr = ("127.0.0.1", srv.port)
    import os
    for payload in (os.urandom(64), os.urandom(5000), b"GET / HTTP/1.1\r\n\r\n" * 10):
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(payload)
        await writer.drain()
        # the server closes the connection on us without answering anything but its hello
        data = await asyncio.wait_for(reader.read(), 10)
        assert data.startswith(b"DYNR")
        writer.close()
    assert (await transport.call(addr, m.Ping(), 5)).node_id == "echo"


async def test_client_refuses_a_server_that_is_not_dynamr(transport) -> None:  # type: ignore[no-untyped-def]
    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH\r\n" + b"\x00" * 64)
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    srv = await asyncio.start_server(impostor, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    with pytest.raises(AuthenticationError, match="not a dynamr node"):
        await transport.call(("127.0.0.1", port), m.Ping(), 5)
    srv.close()


async def test_errors_carry_code_and_message(server, transport) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    addr = ("127.0.0.1", srv.port)
    with pytest.raises(QuorumError, match="not enough replicas"):
        await transport.call(addr, m.Ping(sender="quorum"), 5)
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        await transport.call(addr, m.Ping(sender="crash"), 5)
    with pytest.raises(Exception, match="does not serve"):
        await transport.call(addr, m.NodeStatus(), 5)


async def test_deadline_is_per_call(server, transport) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    addr = ("127.0.0.1", srv.port)
    slow = asyncio.ensure_future(transport.call(addr, m.Ping(sender="slow"), 0.2))
    fast = await transport.call(addr, m.Ping(sender="fast"), 5)
    assert fast.epoch == "fast"
    with pytest.raises(DeadlineExceededError, match=r"within 0\.20s"):
        await slow


async def test_reconnects_after_the_server_restarts(transport) -> None:  # type: ignore[no-untyped-def]
    service = EchoService()
    srv = RpcServer(service.dispatcher, SECRET, frame_bytes=1 << 20, max_message_bytes=16 << 20)
    await srv.start("127.0.0.1", 0)
    port = srv.port
    assert (await transport.call(("127.0.0.1", port), m.Ping(), 5)).node_id == "echo"
    await srv.close()
    with pytest.raises(UnavailableError):
        await transport.call(("127.0.0.1", port), m.Ping(), 5)
    srv = RpcServer(service.dispatcher, SECRET, frame_bytes=1 << 20, max_message_bytes=16 << 20)
    await srv.start("127.0.0.1", port)
    assert (await transport.call(("127.0.0.1", port), m.Ping(), 5)).node_id == "echo"
    await srv.close()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_connection_reset_under_a_caller_is_a_dynamr_error_saying_nothing_was_sent(loop_kind: str) -> None:
    """A peer that resets the connection: the next call fails at once with ConnectFailedError (safe to send
    elsewhere), not with uvloop's bare RuntimeError nor after its whole deadline (asyncio drops the bytes)."""
    import uvloop

    from dynamr.errors import ConnectFailedError

    async def scenario() -> None:
        service = EchoService()
        srv = RpcServer(service.dispatcher, SECRET, frame_bytes=1 << 20, max_message_bytes=16 << 20)
        await srv.start("127.0.0.1", 0)
        transport = TcpTransport(SECRET)
        try:
            addr = ("127.0.0.1", srv.port)
            await transport.call(addr, m.Ping(sender="a"), 5)
            conn = transport._connections[addr]
            conn._writer.transport.abort()  # as a reset from the peer leaves it
            with pytest.raises(ConnectFailedError):
                await conn.call(m.Ping(sender="b"), 30)
            assert (await transport.call(addr, m.Ping(sender="c"), 5)).epoch == "c", "a new connection is opened"
        finally:
            await transport.close()
            await srv.close()

    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 20))
    finally:
        loop.close()
