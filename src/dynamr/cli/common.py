"""What every CLI command shares: finding the cluster, the secret, and turning errors into messages.

Without ``--cluster``, commands use the local cluster in ``./.dynamr`` (or ``--dir``), made by
``dynamr cluster up``. With ``--cluster HOST:PORT[,HOST:PORT...]`` they talk to a remote cluster and need
its secret (``--secret``, ``--secret-file`` or ``DYNAMR_SECRET``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from dynamr.config import load_secret
from dynamr.errors import ConfigError, DynamrError
from dynamr.localcluster import DEFAULT_DIR, LocalCluster
from dynamr.rpc import tls
from dynamr.store.client import AsyncClient, Client

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:  # ParamType is generic only in newer click releases
    _IntParam = click.ParamType[int]
    _PairParam = click.ParamType[tuple[str, str]]
else:
    _IntParam = _PairParam = click.ParamType

def _console(stderr: bool = False) -> Console:
    """A console for standard output or error: on a terminal, rich's; piped or redirected, one that never
    wraps (tables as wide as their content, messages on one line), so scripts see whole names and commands."""
    terminal = Console(stderr=stderr)
    if terminal.is_terminal:
        return terminal
    return Console(stderr=stderr, width=1 << 16, soft_wrap=True)


console = _console()
err_console = _console(stderr=True)

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON instead of a table (for scripts).")


def plain(value: Any) -> Any:
    """``value`` as JSON types: dataclasses (messages and records) as objects, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(plain(value), indent=2))


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
    files = local.tls_files
    nodes = [n.address for n in spec.nodes] + list(local.added().values())
    return Target(nodes, load_secret(secret, secret_file) if (secret or secret_file) else local.secret, local,
                  tls_ca or (files.ca if files else None))


class Size(_IntParam):
    """A byte count: a number, or a number with K, M or G (powers of 1024), for example 64M."""

    name = "size"
    UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().removesuffix("b").removesuffix("i")
        try:
            size = (float(text[:-1]) * self.UNITS[text[-1]]) if text and text[-1] in self.UNITS else float(text)
        except ValueError:
            self.fail(f"{value!r} is not a size: give bytes, or a number with K, M or G (for example 64M)",
                      param, ctx)
        if size < 1 or size != size or size == float("inf"):
            self.fail(f"{value!r} must be at least one byte", param, ctx)
        return int(size)


class KeyValue(_PairParam):
    """KEY=VALUE, as a pair."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, rest = str(value).partition("=")
        if not sep or not key:
            self.fail(f"expected KEY=VALUE, got {value!r}", param, ctx)
        return key, rest


def report_error(exc: DynamrError) -> None:
    """A documented error: one line saying what was wrong (the message says what to do)."""
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
