"""Mutual HMAC challenge-response on the cluster secret, run before any frame is decoded.

Handshake (all fields fixed-size raw bytes, so nothing is parsed before the peer is proven):

1. server → client: ``MAGIC`` (5 bytes: ``DYNR`` and a version) + server nonce (32 bytes)
2. client → server: client nonce (32) + HMAC-SHA256(secret, "client" + server nonce + client nonce)
3. server → client: status byte (1 = accepted, 0 = refused) + HMAC-SHA256(secret, "server" + nonces)

The server proves the secret too, so a client never sends requests to an impostor. A wrong secret, a
silent peer or random bytes end the handshake on the server within ``HANDSHAKE_TIMEOUT`` and the server
keeps serving others. The pure functions here build and check the tokens; :func:`server_handshake` and
:func:`client_handshake` drive them over asyncio streams.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os

from dynamr.errors import AuthenticationError, ConnectFailedError

MAGIC = b"DYNR\x01"
NONCE_BYTES = 32
MAC_BYTES = 32
HANDSHAKE_TIMEOUT = 5.0
ACCEPTED = b"\x01"
REFUSED = b"\x00"


def _mac(secret: bytes, role: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(secret, role + server_nonce + client_nonce, hashlib.sha256).digest()


def client_proof(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return _mac(secret, b"client", server_nonce, client_nonce)


def server_proof(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return _mac(secret, b"server", server_nonce, client_nonce)


def verify(expected: bytes, given: bytes) -> bool:
    return hmac.compare_digest(expected, given)


#: why a server handshake ended without a proven peer
WRONG_SECRET = "did not prove the cluster secret"
GAVE_UP = "closed the connection or stayed silent during the handshake"


async def server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes,
                           timeout: float = HANDSHAKE_TIMEOUT) -> str:
    """Challenge a new connection: "" when the peer proved the secret, else why not (:data:`WRONG_SECRET`,
    or :data:`GAVE_UP` for a peer that left or said nothing, which is no sign of a wrong secret)."""
    server_nonce = os.urandom(NONCE_BYTES)
    writer.write(MAGIC + server_nonce)
    try:
        answer = await asyncio.wait_for(reader.readexactly(NONCE_BYTES + MAC_BYTES), timeout)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return GAVE_UP
    client_nonce, proof = answer[:NONCE_BYTES], answer[NONCE_BYTES:]
    if not verify(client_proof(secret, server_nonce, client_nonce), proof):
        writer.write(REFUSED + bytes(MAC_BYTES))
        return WRONG_SECRET
    writer.write(ACCEPTED + server_proof(secret, server_nonce, client_nonce))
    return ""


def _silent(peer: str, timeout: float) -> ConnectFailedError:
    """A peer that accepted the connection but says nothing is down or paused, not an impostor; nothing
    was sent to it yet, so a caller may safely try another node."""
    return ConnectFailedError(f"{peer} accepted the connection but did not answer the handshake within "
                            f"{timeout:g}s: the process may be stopped or overloaded, or it requires TLS "
                            "(then pass --tls-ca)")


async def client_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes,
                           peer: str, timeout: float = HANDSHAKE_TIMEOUT) -> None:
    """Prove the secret to a server and check its proof; raises :class:`AuthenticationError`."""
    try:
        hello = await asyncio.wait_for(reader.readexactly(len(MAGIC) + NONCE_BYTES), timeout)
    except TimeoutError as exc:
        raise _silent(peer, timeout) from exc
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        # a node that dies or is stopped while we connect looks like this: unreachable, not an impostor
        raise ConnectFailedError(
            f"{peer} closed the connection before the dynamr handshake: it may be stopping or restarting, "
            "or it requires TLS (then pass --tls-ca)") from exc
    if hello[:len(MAGIC)] != MAGIC:
        raise AuthenticationError(f"{peer} is not a dynamr node (or runs an incompatible version)")
    server_nonce = hello[len(MAGIC):]
    client_nonce = os.urandom(NONCE_BYTES)
    writer.write(client_nonce + client_proof(secret, server_nonce, client_nonce))
    try:
        verdict = await asyncio.wait_for(reader.readexactly(1 + MAC_BYTES), timeout)
    except TimeoutError as exc:
        raise _silent(peer, timeout) from exc
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        # a node refusing the secret says so before it closes; one that just closes has died or is stopping
        raise ConnectFailedError(f"{peer} closed the connection during the handshake (stopping or "
                                 "restarting?)") from exc
    if verdict[:1] != ACCEPTED:
        raise AuthenticationError(
            f"{peer} refused our cluster secret: check --secret, --secret-file or DYNAMR_SECRET")
    if not verify(server_proof(secret, server_nonce, client_nonce), verdict[1:]):
        raise AuthenticationError(f"{peer} could not prove it knows the cluster secret; refusing to talk to it")
