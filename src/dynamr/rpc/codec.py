"""Frames and envelopes: how messages become bytes on a stream and back.

A frame is a 5-byte header (payload length, big-endian u32; flags, u8) and a payload of at most
``frame_bytes``. A message larger than one frame is cut into consecutive frames, all but the last flagged
``MORE``; a connection's writer emits a message's frames back to back, so the reader just concatenates
until a frame without ``MORE``. The total is bounded by ``max_message_bytes`` before anything is buffered.

The reassembled payload is a msgpack array, the envelope: ``[kind, request_id, tag, *fields]`` for requests
and replies, ``[ERROR, request_id, code, message]`` for error replies. Decoding uses ``use_list=False``
(tuples are faster) and never runs code. Every field is checked against its declared type before a
message exists (:mod:`dynamr.rpc.messages.checks`); a request or reply with a bad field decodes to an
envelope without a message but with the error, so only that call fails, not the connection.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgpack

from dynamr.errors import FrameTooLargeError, ProtocolError
from dynamr.rpc.messages import MESSAGE_TYPES, Message, Record
from dynamr.rpc.messages.base import build
from dynamr.rpc.messages.checks import FieldError

R = TypeVar("R", bound=Record)

HEADER = struct.Struct(">IB")
#: a record sent on its own (a task spec to a task process): a 4-byte big-endian length, then msgpack
SPEC_HEADER = struct.Struct(">I")
FLAG_MORE = 1

REQUEST = 0
REPLY = 1
ERROR = 2


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded frame payload: a request, a reply, or an error reply."""

    kind: int
    request_id: int
    message: Message | None = None
    error_code: str = ""
    error_message: str = ""


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def record_values(obj: Message | Record) -> list[Any]:
    """The field values of a message or record, nested records as arrays of theirs (None stays None)."""
    values = [getattr(obj, f) for f in obj.FIELDS]
    if obj.NESTED:
        for i, name in enumerate(obj.FIELDS):
            nested = obj.NESTED.get(name)
            value = values[i]
            if nested is not None and value is not None:
                values[i] = [record_values(v) for v in value] if nested[1] else record_values(value)
    return values


def pack_frame(value: Any) -> bytes:
    """A value as one frame on a task process's pipe: a 4-byte big-endian length, then msgpack."""
    payload = _pack(value)
    return SPEC_HEADER.pack(len(payload)) + payload


def pack_record(obj: Record) -> bytes:
    """A record on its own as msgpack bytes (what a task process gets)."""
    return _pack(record_values(obj))


def unpack_record(cls: type[R], data: bytes) -> R:
    try:
        values = msgpack.unpackb(data, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ProtocolError(f"undecodable {cls.__name__}: {exc}") from exc
    if not isinstance(values, tuple):
        raise ProtocolError(f"a {cls.__name__} must be an array")
    built: R = _build(cls, values)
    return built


def build_record(cls: type[R], values: Any) -> R:
    """A record from its array of field values (as :func:`record_values` made it)."""
    if not isinstance(values, tuple):
        raise ProtocolError(f"a {cls.__name__} must be an array")
    built: R = _build(cls, values)
    return built


def _build(cls: type[Any], values: tuple[Any, ...]) -> Any:
    """An instance of a message or record class from its field values, each checked against its type."""
    try:
        return build(cls, values)
    except FieldError as exc:
        raise ProtocolError(f"malformed message: {exc}") from None


def encode_message(kind: int, request_id: int, msg: Message) -> bytes:
    return _pack([kind, request_id, msg.TAG, *record_values(msg)])


def encode_error(request_id: int, code: str, text: str) -> bytes:
    return _pack([ERROR, request_id, code, text])


def decode_envelope(payload: bytes) -> Envelope:
    """Decode one reassembled payload; anything malformed raises :class:`ProtocolError`."""
    try:
        items = msgpack.unpackb(payload, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ProtocolError(f"undecodable message: {exc}") from exc
    if not isinstance(items, tuple) or len(items) < 3:
        raise ProtocolError("message envelope must be an array of at least 3 items")
    kind, request_id = items[0], items[1]
    if not isinstance(request_id, int):
        raise ProtocolError("request id must be an integer")
    if kind == ERROR:
        if len(items) != 4 or not isinstance(items[2], str) or not isinstance(items[3], str):
            raise ProtocolError("malformed error reply")
        return Envelope(kind, request_id, error_code=items[2], error_message=items[3])
    if kind not in (REQUEST, REPLY):
        raise ProtocolError(f"unknown envelope kind {kind!r}")
    cls = MESSAGE_TYPES.get(items[2]) if type(items[2]) is int else None
    if cls is None:
        raise ProtocolError(f"unknown message tag {items[2]!r}")
    try:
        msg: Message = build(cls, items[3:])
    except FieldError as exc:
        # the envelope is sound, so the peer gets an error reply for this request and the stream goes on
        return Envelope(kind, request_id, error_code=ProtocolError.code, error_message=f"malformed message: {exc}")
    return Envelope(kind, request_id, message=msg)


def frame(payload: bytes, frame_bytes: int) -> list[bytes | memoryview]:
    """Cut a payload into wire frames of at most ``frame_bytes`` each (headers included in the list).

    The pieces are views of ``payload``, not copies: the transport copies once into its send buffer.
    """
    size = len(payload)
    if size <= frame_bytes:
        return [HEADER.pack(size, 0), payload]
    view = memoryview(payload)
    out: list[bytes | memoryview] = []
    for start in range(0, size, frame_bytes):
        part = view[start:start + frame_bytes]
        more = FLAG_MORE if start + frame_bytes < size else 0
        out.append(HEADER.pack(len(part), more))
        out.append(part)
    return out


class Budget(Protocol):
    """Room shared by all connections for messages still arriving (see ``rpc.server.ByteBudget``)."""

    async def take(self, amount: int) -> None: ...
    async def give(self, amount: int) -> None: ...


async def read_payload(reader: asyncio.StreamReader, frame_bytes: int, max_message_bytes: int,
                       budget: Budget | None = None) -> bytes:
    """Read one whole message (one or more frames). Raises ``IncompleteReadError`` at end of stream.
    The frames of a message cut in several are held against ``budget`` until the last one arrives."""
    header = await reader.readexactly(HEADER.size)
    length, flags = HEADER.unpack(header)
    _check_frame(length, flags, frame_bytes)
    if not flags & FLAG_MORE:
        return await reader.readexactly(length)
    held = 0
    try:
        parts = []
        total = 0
        while True:
            total += length
            if total > max_message_bytes:
                raise FrameTooLargeError(f"message exceeds the {max_message_bytes}-byte limit")
            if budget is not None:
                await budget.take(length)
                held += length
            parts.append(await reader.readexactly(length))
            if not flags & FLAG_MORE:
                return b"".join(parts)
            length, flags = HEADER.unpack(await reader.readexactly(HEADER.size))
            _check_frame(length, flags, frame_bytes)
    finally:
        if budget is not None and held:
            await budget.give(held)


def _check_frame(length: int, flags: int, frame_bytes: int) -> None:
    if length > frame_bytes:
        raise FrameTooLargeError(f"frame of {length} bytes exceeds the {frame_bytes}-byte frame limit")
    if flags & ~FLAG_MORE:
        raise ProtocolError(f"unknown frame flags {flags:#x}")


def message_size_error(size: int, limit: int) -> FrameTooLargeError:
    return FrameTooLargeError(
        f"message of {size} bytes exceeds the {limit}-byte limit (max_message_bytes); "
        "send large data as a file on the store")


def pack_any(value: Any) -> bytes:
    """msgpack-encode a plain value (used for opaque fields such as causal contexts)."""
    return _pack(value)


def unpack_any(data: bytes) -> Any:
    return msgpack.unpackb(data, use_list=False, raw=False)
