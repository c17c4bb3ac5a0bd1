"""The hostile-input suite: fuzzed frames and fields, floods and dying peers, against a real TCP server.

Whatever arrives, the server answers or closes that one connection, never crashes, never lets a malformed
message reach a handler, and keeps serving everyone else. Runs in seconds (seeded, so a failure replays).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from dynamr.errors import ConnectFailedError, ProtocolError
from dynamr.rpc import auth, codec
from dynamr.rpc import messages as m
from dynamr.rpc.client import TcpTransport
from dynamr.rpc.server import ByteBudget, RpcServer
from tests.helpers import async_wait_until
from tests.unit.test_rpc_tcp import SECRET, EchoService

FUZZ_SEED = 20261129


@pytest.fixture
async def served() -> AsyncIterator[tuple[RpcServer, EchoService, tuple[str, int]]]:
    service = EchoService()
    seen: list[m.Message] = []
    original = service.dispatcher.dispatch

    async def recording(msg: m.Message) -> m.Message:
        seen.append(msg)
        return await original(msg)

    service.dispatcher.dispatch = recording  # type: ignore[method-assign]
    service.seen = seen  # type: ignore[attr-defined]
    srv = RpcServer(service.dispatcher, SECRET, frame_bytes=1 << 16, max_message_bytes=1 << 20,
                    max_buffered_bytes=1 << 20, max_connections=64)
    await srv.start("127.0.0.1", 0)
    yield srv, service, ("127.0.0.1", srv.port)
    await srv.close()


async def _authenticated(addr: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(*addr)
    await auth.client_handshake(reader, writer, SECRET, "test")
    return reader, writer


async def _send(writer: asyncio.StreamWriter, payload: bytes, frame_bytes: int = 1 << 16) -> None:
    writer.writelines(codec.frame(payload, frame_bytes))
    await writer.drain()


async def _reply(reader: asyncio.StreamReader) -> codec.Envelope | None:
    try:
        payload = await asyncio.wait_for(codec.read_payload(reader, 1 << 20, 1 << 24), 5)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None  # the server closed this connection
    return codec.decode_envelope(payload)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randrange(-2**40, 2**40)
    if kind == 3:
        return rng.random() * 1e6
    if kind == 4:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(8)))
    if kind == 5:
        return rng.randbytes(rng.randrange(9))
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return {str(i): _random_value(rng, depth + 1) for i in range(rng.randrange(3))}
    return tuple(_random_value(rng, depth + 1) for _ in range(rng.randrange(3)))


async def test_fuzzed_fields_of_every_message_type_never_reach_a_handler_untyped(served) -> None:  # type: ignore[no-untyped-def]
    _, service, addr = served
    rng = random.Random(FUZZ_SEED)
    reader, writer = await _authenticated(addr)
    tags = sorted(m.MESSAGE_TYPES)
    for request_id in range(1, 600):
        cls = m.MESSAGE_TYPES[rng.choice(tags)]
        fields = [_random_value(rng) for _ in range(rng.randrange(len(cls.FIELDS) + 2))]
        await _send(writer, msgpack.packb([codec.REQUEST, request_id, cls.TAG, *fields], use_bin_type=True))
        envelope = await _reply(reader)
        if envelope is None:  # a broken envelope closes the connection; open another
            reader, writer = await _authenticated(addr)
            continue
        assert envelope.request_id == request_id
    for msg in service.seen:  # whatever got through was checked field by field against its type
        assert codec.decode_envelope(codec.encode_message(codec.REQUEST, 1, msg)).message == msg
    writer.close()
    async with TcpTransport(SECRET) as transport:
        assert (await transport.call(addr, m.Ping(sender="ok"), 5)).epoch == "ok"


async def test_malformed_put_gets_an_error_reply_and_stores_nothing(served) -> None:  # type: ignore[no-untyped-def]
    _, service, addr = served
    reader, writer = await _authenticated(addr)
    await _send(writer, msgpack.packb([codec.REQUEST, 7, m.Put.TAG, b"k", {"not": "bytes"}]))
    envelope = await _reply(reader)
    assert envelope is not None and envelope.kind == codec.ERROR and envelope.request_id == 7
    assert "Put.value must be bytes" in envelope.error_message
    assert service.stored == {}
    await _send(writer, codec.encode_message(codec.REQUEST, 8, m.Put(key=b"k", value=b"v")))
    envelope = await _reply(reader)
    assert envelope is not None and envelope.request_id == 8 and service.stored == {b"k": b"v"}
    writer.close()


async def test_fuzzed_frames_and_garbage_close_only_their_connection(served) -> None:  # type: ignore[no-untyped-def]
    _, _, addr = served
    rng = random.Random(FUZZ_SEED + 1)
    for _ in range(150):
        _, writer = await _authenticated(addr)
        choice = rng.randrange(4)
        if choice == 0:
            writer.write(os.urandom(rng.randrange(1, 300)))
        elif choice == 1:  # a header promising more than a frame may hold
            writer.write(codec.HEADER.pack(rng.randrange(1 << 17, 1 << 31), rng.randrange(256)))
        elif choice == 2:  # a frame of random msgpack
            payload = msgpack.packb(_random_value(rng), use_bin_type=True)
            writer.write(codec.HEADER.pack(len(payload), 0) + payload)
        else:  # a message cut short
            payload = codec.encode_message(codec.REQUEST, 1, m.Put(key=b"k", value=os.urandom(100)))
            writer.write(codec.HEADER.pack(len(payload), 0) + payload[:rng.randrange(len(payload))])
        await writer.drain()
        writer.close()
    async with TcpTransport(SECRET) as transport:
        assert (await transport.call(addr, m.Ping(sender="still here"), 5)).epoch == "still here"


async def test_a_flood_of_wrong_secrets_is_refused_and_logged_a_few_times(served, caplog) -> None:  # type: ignore[no-untyped-def]
    srv, _, addr = served
    caplog.set_level(logging.DEBUG, logger="dynamr.rpc.server")

    async def wrong() -> None:
        async with TcpTransport(b"wrong") as bad:
            with pytest.raises(Exception, match="refused our cluster secret"):
                await bad.call(addr, m.Ping(), 5)

    for _ in range(10):
        await asyncio.gather(*(wrong() for _ in range(20)))
    assert srv.refused_handshakes == 200
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "refused" in r.getMessage()]
    assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]
    async with TcpTransport(SECRET) as transport:
        assert (await transport.call(addr, m.Ping(sender="x"), 5)).epoch == "x"


async def test_a_client_that_gives_up_is_not_reported_as_a_wrong_secret(served, caplog) -> None:  # type: ignore[no-untyped-def]
    srv, _, addr = served
    caplog.set_level(logging.DEBUG, logger="dynamr.rpc.server")
    for _ in range(5):
        reader, writer = await asyncio.open_connection(*addr)
        await reader.readexactly(len(auth.MAGIC) + auth.NONCE_BYTES)
        writer.close()  # gave up waiting

    async def ended() -> bool:
        return srv.refused_handshakes == 5
    await async_wait_until(ended, 10, "the server to see the five connections end")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_connections_past_the_limit_are_refused_and_others_go_on(served) -> None:  # type: ignore[no-untyped-def]
    srv, _, addr = served
    held = [await _authenticated(addr) for _ in range(64)]
    with pytest.raises(ConnectFailedError):
        reader, writer = await asyncio.open_connection(*addr)
        await auth.client_handshake(reader, writer, SECRET, "one too many")
    assert srv.refused_connections >= 1
    for _, writer in held:
        writer.close()
    async with TcpTransport(SECRET) as transport:
        async def answered() -> bool:
            try:
                return (await transport.call(addr, m.Ping(sender="y"), 2)).epoch == "y"
            except Exception:
                return False
        await async_wait_until(answered, 10, "a new connection to be served once others closed")


async def test_peers_that_die_during_the_handshake_are_unreachable_not_impostors() -> None:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def hello_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(auth.MAGIC + os.urandom(auth.NONCE_BYTES))
        await reader.readexactly(auth.NONCE_BYTES + auth.MAC_BYTES)
        writer.close()

    for handler in (close_at_once, hello_then_close):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with TcpTransport(SECRET) as transport:
            with pytest.raises(ConnectFailedError):
                await transport.call(("127.0.0.1", port), m.Ping(), 2)
        server.close()


async def test_partly_received_messages_share_one_budget() -> None:
    budget = ByteBudget(310, wait=0.2)  # one whole message always fits (the server makes sure)
    frames = [codec.HEADER.pack(100, codec.FLAG_MORE) + b"x" * 100] * 3 + [codec.HEADER.pack(10, 0) + b"y" * 10]

    def reader_of(data: bytes, eof: bool) -> asyncio.StreamReader:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        return reader

    stalled = asyncio.create_task(codec.read_payload(reader_of(b"".join(frames[:3]), False), 1000, 10_000, budget))
    await asyncio.sleep(0.05)
    assert budget.used == 300, "a message still arriving holds its frames against the budget"
    with pytest.raises(ProtocolError, match="too many large messages"):
        await codec.read_payload(reader_of(b"".join(frames), True), 1000, 10_000, budget)
    stalled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stalled
    assert budget.used == 0, "a connection that ends gives its share back"
    payload = await codec.read_payload(reader_of(b"".join(frames), True), 1000, 10_000, budget)
    assert payload == b"x" * 300 + b"y" * 10 and budget.used == 0


async def test_a_client_that_floods_requests_without_reading_gets_at_most_256_in_progress(served) -> None:  # type: ignore[no-untyped-def]
    from dynamr.rpc.server import MAX_INFLIGHT

    _, service, addr = served
    active = [0, 0]  # now, most
    original = service.dispatcher.dispatch

    async def counting(msg: m.Message) -> m.Message:
        active[0] += 1
        active[1] = max(active)
        try:
            return await original(msg)  # a "slow" ping sleeps 5 s
        finally:
            active[0] -= 1

    service.dispatcher.dispatch = counting  # type: ignore[method-assign]
    _, writer = await _authenticated(addr)
    for i in range(4 * MAX_INFLIGHT):
        writer.writelines(codec.frame(codec.encode_message(codec.REQUEST, i, m.Ping(sender="slow")), 1 << 16))

    async def at_the_cap() -> bool:
        return active[0] >= MAX_INFLIGHT

    await async_wait_until(at_the_cap, 10, "the server to take requests up to its cap")
    assert active[1] == MAX_INFLIGHT, "the server stopped reading at the cap"
    writer.close()
