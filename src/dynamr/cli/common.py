"""What every CLI command shares: finding the cluster, the secret, and turning errors into messages.

Without ``--cluster``, commands use the local cluster in ``./.dynamr`` (or ``--dir``), made by
``dynamr cluster up``. With ``--cluster HOST:PORT[,HOST:PORT...]`` they talk to a remote cluster and need
its secret (``--secret``, ``--secret-file`` or ``DYNAMR_SECRET``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from dynamr.config import load_secret
from dynamr.errors import ConfigError, DynamrError
from dynamr.localcluster import DEFAULT_DIR, LocalCluster
from dynamr.rpc import tls
from dynamr.store.client import AsyncClient, Client

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


@dataclass
class Target:
    seeds: list[tuple[str, int]]
    secret: bytes
    local: LocalCluster | None
    tls_ca: Path | None = None

    def client(self, timeout: float = 10.0) -> Client:
        ctx = tls.client_context(self.tls_ca) if self.tls_ca else None
        return Client(self.seeds, self.secret, timeout=timeout, ssl_context=ctx)

    def async_client(self, timeout: float = 30.0) -> AsyncClient:
        ctx = tls.client_context(self.tls_ca) if self.tls_ca else None
        return AsyncClient(self.seeds, self.secret, timeout=timeout, ssl_context=ctx)


def connection_options(func: F) -> F:
    """Add --cluster, --secret, --secret-file, --dir and --tls-ca, passed through as they were given."""
    for option in reversed([
        click.option("--cluster", "cluster", metavar="HOST:PORT[,...]",
                     help="A remote cluster's node address(es)."),
        click.option("--secret", envvar="DYNAMR_SECRET", help="Cluster secret (or set DYNAMR_SECRET)."),
        click.option("--secret-file", type=click.Path(path_type=Path), help="File holding the cluster secret."),
        click.option("--dir", "root", type=click.Path(path_type=Path), default=DEFAULT_DIR, show_default=True,
                     help="Directory of the local cluster (used without --cluster)."),
        click.option("--tls-ca", envvar="DYNAMR_TLS_CA", type=click.Path(exists=True, path_type=Path),
                     help="Connect with TLS, verifying nodes against this CA file (or set DYNAMR_TLS_CA)."),
    ]):
        func = option(func)
    return func


def cluster_options(func: F) -> F:
    """The connection options, resolved into a ``target`` argument (a remote or the local cluster)."""

    @functools.wraps(func)
    def wrapper(*args: Any, cluster: str | None, secret: str | None, secret_file: Path | None,
                root: Path, tls_ca: Path | None, **kwargs: Any) -> Any:
        return func(*args, target=resolve_target(cluster, secret, secret_file, root, tls_ca), **kwargs)

    return connection_options(wrapper)  # type: ignore[return-value]


def resolve_target(cluster: str | None, secret: str | None, secret_file: Path | None, root: Path,
                   tls_ca: Path | None) -> Target:
    """A remote cluster from --cluster and its secret, or else the local cluster in ``root``."""
    if cluster:
        seeds = [parse_address(part) for part in cluster.split(",") if part.strip()]
        return Target(seeds, load_secret(secret, secret_file), None, tls_ca)
    local = LocalCluster(root)
    spec = local.spec
    return Target([n.address for n in spec.nodes],
                  load_secret(secret, secret_file) if (secret or secret_file) else local.secret, local, tls_ca)


def friendly_errors(func: F) -> F:
    """Print a DynamrError as one clear line and exit 1 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DynamrError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
