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
    msgpack.packb([7, 1, 1]),
    msgpack.packb([0, 1, {"unhashable": 1}]),  # a tag that is not even hashable
    msgpack.packb([0, 1, [1, 2]]),
])
def test_malformed_envelopes_raise_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode_envelope(payload)


@pytest.mark.parametrize(("fields", "complaint"), [
    ([b"k"], "missing"),  # a required field absent
    ([b"k", 5], "Put.value must be bytes, not int"),  # a value that is not bytes never reaches storage
    ([b"k", "text"], "Put.value must be bytes, not str"),
    ([b"k", b"v", b"", True], "Put.n must be an integer, not bool"),
    ([b"k", b"v", b"", 3, 2, "soon"], "Put.timeout must be a number"),
    ([b"k", b"v", b"", 3, 2, 1.0, "extra"], "fields"),
])
def test_fields_of_the_wrong_type_give_an_error_envelope_not_a_message(fields: list[object],
                                                                        complaint: str) -> None:
    env = codec.decode_envelope(msgpack.packb([codec.REQUEST, 9, m.Put.TAG, *fields]))
    assert env.message is None and env.request_id == 9
    assert env.error_code == ProtocolError.code and complaint in env.error_message


def test_nested_records_and_typed_tuples_are_checked_to_the_leaves() -> None:
    good = m.ListKeysReply(keys=(b"a", b"b"))
    assert codec.decode_envelope(codec.encode_message(codec.REPLY, 1, good)).message == good
    bad = codec.decode_envelope(msgpack.packb([codec.REPLY, 1, m.ListKeysReply.TAG, [b"a", 7]]))
    assert bad.message is None and "ListKeysReply.keys must be bytes, not int" in bad.error_message
    spec = m.TaskSpec(job="j", attempt="a", kind="map", step=0, source="s", source_name="s.py")
    values = codec.record_values(spec)
    values[m.TaskSpec.FIELDS.index("job")] = 12
    with pytest.raises(ProtocolError, match=r"TaskSpec\.job must be a string"):
        codec.build_record(m.TaskSpec, tuple(values))


def test_an_integer_is_accepted_where_a_number_is_declared() -> None:
    env = codec.decode_envelope(msgpack.packb([codec.REQUEST, 1, m.Put.TAG, b"k", b"v", b"", 3, 2, 5]))
    assert env.message == m.Put(key=b"k", value=b"v", n=3, w=2, timeout=5.0)
    assert isinstance(env.message.timeout, float)


def test_every_message_and_record_class_has_a_check_for_every_field() -> None:
    """Checks are worked out on a class's first use; this makes sure no class would fail then."""
    from dynamr.rpc.messages.base import RECORD_TYPES

    classes: list[type[m.Message] | type[m.Record]] = [*m.MESSAGE_TYPES.values(), *RECORD_TYPES]
    assert len(classes) > 60
    for cls in classes:
        assert len(cls.CHECKS) == len(cls.FIELDS) == len(cls.__dataclass_fields__), cls.__name__
        assert set(cls.NESTED) <= set(cls.FIELDS), cls.__name__


def test_a_field_type_without_a_check_is_refused_on_first_use_and_subclasses_are_refused() -> None:
    from dataclasses import dataclass

    from dynamr.rpc.messages.base import RECORD_TYPES, record

    @record
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Odd(m.Record):
        where: set[int]

    try:
        with pytest.raises(TypeError, match="no wire check"):
            Odd.CHECKS  # noqa: B018
    finally:
        RECORD_TYPES.remove(Odd)
    with pytest.raises(TypeError, match="must not subclass"):
        @record
        @dataclass(frozen=True, slots=True, kw_only=True)
        class Child(m.AttemptReport):
            extra: int = 0
