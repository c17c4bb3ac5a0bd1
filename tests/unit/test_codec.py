from __future__ import annotations

import asyncio

import msgpack
import pytest

from dynamr.errors import FrameTooLargeError, ProtocolError
from dynamr.rpc import codec
from dynamr.rpc import messages as m


def _feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_every_message_type_round_trips() -> None:
    samples = [m.Ping(sender="n1"), m.Put(key=b"k", value=b"\x00" * 10, context=b"c", n=3, w=2, timeout=1.5),
               m.GetReply(values=(b"a", b"b"), context=b""), m.ReplicaWrite(key=b"k", state=b"s", hint_for="n2")]
    for msg in samples:
        env = codec.decode_envelope(codec.encode_message(codec.REQUEST, 7, msg))
        assert env.request_id == 7 and env.message == msg


def test_error_envelope_round_trips() -> None:
    env = codec.decode_envelope(codec.encode_error(3, "quorum", "too few"))
    assert (env.kind, env.error_code, env.error_message) == (codec.ERROR, "quorum", "too few")


async def test_large_message_is_cut_into_bounded_frames_and_reassembled() -> None:
    payload = bytes(range(256)) * 20000  # ~5 MB
    parts = codec.frame(payload, 1 << 20)
    headers = parts[0::2]
    assert all(codec.HEADER.unpack(h)[0] <= 1 << 20 for h in headers)
    assert len(headers) == 5
    assert await codec.read_payload(_feed(b"".join(parts)), 1 << 20, 64 << 20) == payload


async def test_oversized_frame_is_rejected_before_reading_it() -> None:
    with pytest.raises(FrameTooLargeError):
        await codec.read_payload(_feed(codec.HEADER.pack(10 << 20, 0)), 1 << 20, 64 << 20)


async def test_message_over_the_total_limit_is_rejected() -> None:
    data = b"".join(codec.frame(b"x" * 5000, 1024))
    with pytest.raises(FrameTooLargeError):
        await codec.read_payload(_feed(data), 1024, 4096)


@pytest.mark.parametrize("payload", [
    b"\xc1garbage", msgpack.packb(5), msgpack.packb([0, 1, 9999]), msgpack.packb([0, "x", 1]),
    msgpack.packb([0, 1, m.Put.TAG, b"k"]),  # missing required field
    msgpack.packb([0, 1, m.Ping.TAG, "a", "b", "c"]),  # too many fields
    msgpack.packb([7, 1, 1]),
])
def test_malformed_envelopes_raise_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode_envelope(payload)
