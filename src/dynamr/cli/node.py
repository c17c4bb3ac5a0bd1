"""``dynamr node start``: run one store node in the foreground (``--join`` a running cluster)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dynamr.config import ClusterSpec, NodeAddress, load_secret
from dynamr.daemons import run_node, setup_logging
from dynamr.errors import ConfigError
from dynamr.rpc.tls import TlsFiles

F = TypeVar("F", bound=Callable[..., Any])
LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


def tls_options(func: F) -> F:
    """--tls-cert, --tls-key and --tls-ca: a daemon serves TLS and verifies the processes it calls."""
    for option in reversed([
        click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Serve TLS with this certificate."),
        click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Private key of --tls-cert."),
        click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="CA file to verify the other processes' certificates (TLS everywhere)."),
    ]):
        func = option(func)
    return func


def tls_files(cert: Path | None, key: Path | None, ca: Path | None) -> TlsFiles | None:
    if not (cert or key or ca):
        return None
    if not (cert and key and ca):
        raise ConfigError("TLS needs --tls-cert, --tls-key and --tls-ca together")
    return TlsFiles(cert, key, ca)


def parent_options(func: F) -> F:
    """--exit-with-parent and --parent-pid: a throwaway daemon stops when the process that started it exits."""
    func = click.option("--parent-pid", type=click.IntRange(min=2), default=None, metavar="PID",
                        help="With --exit-with-parent: the pid of the process that starts this one, as that "
                             "process knows it; then its death is noticed even if it comes before this "
                             "process is up (default: this process's parent when it starts).")(func)
    return click.option("--exit-with-parent", is_flag=True,
                        help="Stop when the process that started this one exits (for throwaway clusters).")(func)


def watched_parent(exit_with_parent: bool, parent_pid: int | None) -> int | None:
    """The pid whose exit stops this daemon, or None."""
    if parent_pid is not None and not exit_with_parent:
        raise ConfigError("--parent-pid goes with --exit-with-parent")
    if not exit_with_parent:
        return None
    return parent_pid if parent_pid is not None else os.getppid()


@click.group()
def node() -> None:
    """Run a store node."""


@node.command("start")
@click.option("--cluster-file", required=True, type=click.Path(exists=True, path_type=Path),
              help="JSON file listing the cluster's nodes and settings.")
@click.option("--node-id", required=True, help="This node's id in the cluster file.")
@click.option("--data-dir", required=True, type=click.Path(path_type=Path), help="Where this node keeps data.")
@click.option("--secret", envvar="DYNAMR_SECRET", help="Cluster secret (or set DYNAMR_SECRET).")
@click.option("--secret-file", type=click.Path(path_type=Path), help="File holding the cluster secret.")
@click.option("--log-level", default="info", show_default=True, type=LOG_LEVELS)
@tls_options
@parent_options
@click.option("--join", "join", metavar="HOST:PORT", default=None,
              help="A member of a running cluster: this node asks it for membership (then stage and commit "
                   "its join with 'dynamr cluster join NODE' and 'dynamr cluster commit').")
@click.option("--listen", metavar="HOST:PORT", default=None,
              help="This node's address, when the cluster file does not list it (a node that joins).")
def start(cluster_file: Path, node_id: str, data_dir: Path, secret: str | None, secret_file: Path | None,
          log_level: str, tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None,
          exit_with_parent: bool, parent_pid: int | None, join: str | None, listen: str | None) -> None:
    """Start a node in the foreground; it listens only on its own address (from the cluster file, or
    --listen)."""
    parent = watched_parent(exit_with_parent, parent_pid)
    spec = ClusterSpec.load(cluster_file)
    if listen is not None:
        host, port = _address(listen, "--listen")
        me = NodeAddress(node_id=node_id, host=host, port=port)
    elif any(n.node_id == node_id for n in spec.nodes):
        me = spec.node(node_id)
    else:
        raise ConfigError(f"node {node_id} is not in {cluster_file}: give its address with --listen HOST:PORT "
                          "(and --join HOST:PORT of a member, to join a running cluster)")
    secret_bytes = load_secret(secret, secret_file)
    setup_logging(log_level, node_id)
    run_node(spec, node_id, data_dir, secret_bytes, tls_files=tls_files(tls_cert, tls_key, tls_ca),
             parent=parent, join=_address(join, "--join") if join else None, listen=me)


def _address(text: str, option: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{option} takes HOST:PORT (got {text!r})")
    return host, int(port)


@click.group()
def coordinator() -> None:
    """Run the MapReduce coordinator."""


@coordinator.command("start")
@click.option("--cluster-file", required=True, type=click.Path(exists=True, path_type=Path),
              help="JSON file listing the cluster's nodes, its coordinator address and settings.")
@click.option("--secret", envvar="DYNAMR_SECRET", help="Cluster secret (or set DYNAMR_SECRET).")
@click.option("--secret-file", type=click.Path(path_type=Path), help="File holding the cluster secret.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where job state is kept so a restart resumes jobs (without it, state is in memory only).")
@click.option("--log-level", default="info", show_default=True, type=LOG_LEVELS)
@parent_options
@click.option("--local-jobs", is_flag=True,
              help="Accept jobs with local input and output paths (an embedded run on one machine).")
@tls_options
def start_coordinator(cluster_file: Path, secret: str | None, secret_file: Path | None, data_dir: Path | None,
                      log_level: str, exit_with_parent: bool, parent_pid: int | None, local_jobs: bool,
                      tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None) -> None:
    """Start the coordinator in the foreground, on the address the cluster file gives it."""
    parent = watched_parent(exit_with_parent, parent_pid)
    from dynamr.daemons import run_coordinator

    spec = ClusterSpec.load(cluster_file)
    secret_bytes = load_secret(secret, secret_file)
    setup_logging(log_level, "coordinator")
    run_coordinator(spec, secret_bytes, data_dir=data_dir, tls_files=tls_files(tls_cert, tls_key, tls_ca),
                    parent=parent, local_jobs=local_jobs)
