"""Optional TLS for every connection: confidentiality on top of the HMAC secret handshake.

The handshake already proves both ends know the cluster secret, so TLS here is about keeping data private
on the wire: clients verify the server's certificate against the cluster's CA file but not its host name
(nodes are often addressed by IP). TLS roughly halves bulk throughput; it is off unless configured.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dynamr.errors import ConfigError

CERT, KEY = "cert.pem", "key.pem"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A process's TLS material: it serves with ``cert``/``key`` and verifies the others against ``ca``."""

    cert: Path
    key: Path
    ca: Path


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


def make_self_signed(directory: Path, days: int = 3650) -> tuple[Path, Path]:
    """A private key and a self-signed certificate in ``directory`` (made with the ``openssl`` command):
    enough for a cluster on one machine, where the certificate is also the CA every process trusts."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ConfigError("TLS for a local cluster needs the openssl command; install it, or start the nodes "
                          "yourself with --tls-cert, --tls-key and --tls-ca")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert, key = directory / CERT, directory / KEY
    result = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days),
                             "-subj", "/CN=dynamr-local"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"openssl could not make a certificate: {result.stderr.strip()}")
    os.chmod(key, 0o600)
    return cert, key
