"""Optional TLS for every connection: confidentiality on top of the HMAC secret handshake.

The handshake already proves both ends know the cluster secret, so TLS here is about keeping data private
on the wire: clients verify the server's certificate against the cluster's CA file but not its host name
(nodes are often addressed by IP). TLS roughly halves bulk throughput; it is off unless configured.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from dynamr.errors import ConfigError


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    return ctx


def client_context(ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS CA file {ca}: {exc}") from exc
    return ctx
