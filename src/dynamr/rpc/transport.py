"""The transport interface nodes and clients talk through, and its in-process implementation.

:class:`Transport` is all a caller needs: ``call(address, message, timeout)``. The TCP implementation lives
in :mod:`dynamr.rpc.client`. :class:`LocalTransport` connects :class:`~dynamr.rpc.server.Dispatcher`
objects inside one process, still encoding and decoding every message (so codec bugs show up in unit
tests), and lets a test take a peer down or bring it back without sockets or sleeps.
"""

from __future__ import annotations

import abc
import asyncio
from typing import TYPE_CHECKING, Self

from dynamr.errors import DeadlineExceededError, UnavailableError, error_from_code
from dynamr.rpc import codec
from dynamr.rpc.messages import Message

if TYPE_CHECKING:
    from dynamr.rpc.server import Dispatcher

Address = tuple[str, int]


class Transport(abc.ABC):
    """Sends a request to a peer and returns its reply, or raises a :class:`~dynamr.errors.DynamrError`."""

    @abc.abstractmethod
    async def call(self, address: Address, msg: Message, timeout: float) -> Message: ...

    def drop(self, address: Address) -> None:  # noqa: B027 - optional hook
        """Forget any connection to ``address`` (the peer is believed dead)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class LocalTransport(Transport):
    """Routes calls to dispatchers registered in this process; peers can be taken down and up."""

    def __init__(self) -> None:
        self._peers: dict[Address, Dispatcher] = {}
        self._down: set[Address] = set()
        #: paused peers: requests to them get no answer until they resume (as under SIGSTOP)
        self._resumed: dict[Address, asyncio.Event] = {}

    def register(self, address: Address, dispatcher: Dispatcher) -> None:
        self._peers[address] = dispatcher

    def set_down(self, address: Address, down: bool = True) -> None:
        if down:
            self._down.add(address)
        else:
            self._down.discard(address)

    def set_paused(self, address: Address, paused: bool = True) -> None:
        if paused:
            self._resumed.setdefault(address, asyncio.Event())
        else:
            self._resumed.pop(address, asyncio.Event()).set()

    async def call(self, address: Address, msg: Message, timeout: float) -> Message:
        dispatcher = self._peers.get(address)
        if dispatcher is None or address in self._down:
            raise UnavailableError(f"could not connect to {address[0]}:{address[1]}")
        paused = self._resumed.get(address)
        if paused is not None:
            try:
                await asyncio.wait_for(paused.wait(), timeout)
            except TimeoutError:
                raise DeadlineExceededError(f"no reply to {type(msg).__name__} within {timeout:.2f}s") from None
        envelope = codec.decode_envelope(codec.encode_message(codec.REQUEST, 1, msg))
        request = envelope.message
        if request is None:
            raise error_from_code(envelope.error_code, envelope.error_message)
        try:
            reply = await asyncio.wait_for(dispatcher.dispatch(request), timeout)
        except TimeoutError as exc:
            raise DeadlineExceededError(f"no reply to {type(msg).__name__} within {timeout:.2f}s") from exc
        except Exception as exc:
            code, text = dispatcher.error_reply(exc, request)
            raise error_from_code(code, text) from exc
        if address in self._down:
            raise UnavailableError(f"connection to {address[0]}:{address[1]} closed")
        answer = codec.decode_envelope(codec.encode_message(codec.REPLY, 1, reply))
        if answer.message is None:
            raise error_from_code(answer.error_code, answer.error_message)
        return answer.message
