"""``dynamr node start``: run one store node in the foreground."""

from __future__ import annotations

from pathlib import Path

import click

from dynamr.config import ClusterSpec, load_secret
from dynamr.daemons import run_node, setup_logging
from dynamr.errors import ConfigError
from dynamr.rpc import tls

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


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
@click.option("--tls-cert", type=click.Path(exists=True, path_type=Path), help="Serve TLS with this certificate.")
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path), help="Private key of --tls-cert.")
@click.option("--tls-ca", type=click.Path(exists=True, path_type=Path),
              help="CA file to verify peers' certificates (TLS between nodes).")
@click.option("--exit-with-parent", is_flag=True,
              help="Stop when the process that started this node exits (for throwaway clusters).")
def start(cluster_file: Path, node_id: str, data_dir: Path, secret: str | None, secret_file: Path | None,
          log_level: str, tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None,
          exit_with_parent: bool) -> None:
    """Start a node in the foreground; it listens only on its address in the cluster file."""
    spec = ClusterSpec.load(cluster_file)
    spec.node(node_id)
    secret_bytes = load_secret(secret, secret_file)
    setup_logging(log_level, node_id)
    if bool(tls_cert) != bool(tls_key) or (tls_cert and not tls_ca):
        raise ConfigError("TLS needs --tls-cert, --tls-key and --tls-ca together")
    server_ssl = tls.server_context(tls_cert, tls_key) if tls_cert and tls_key else None
    client_ssl = tls.client_context(tls_ca) if tls_ca else None
    run_node(spec, node_id, data_dir, secret_bytes, server_ssl=server_ssl, client_ssl=client_ssl,
             exit_with_parent=exit_with_parent)


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
@click.option("--exit-with-parent", is_flag=True, help="Stop when the process that started this one exits.")
@click.option("--local-jobs", is_flag=True,
              help="Accept jobs with local input and output paths (an embedded run on one machine).")
def start_coordinator(cluster_file: Path, secret: str | None, secret_file: Path | None, data_dir: Path | None,
                      log_level: str, exit_with_parent: bool, local_jobs: bool) -> None:
    """Start the coordinator in the foreground, on the address the cluster file gives it."""
    from dynamr.daemons import run_coordinator

    spec = ClusterSpec.load(cluster_file)
    secret_bytes = load_secret(secret, secret_file)
    setup_logging(log_level, "coordinator")
    run_coordinator(spec, secret_bytes, data_dir=data_dir, exit_with_parent=exit_with_parent,
                    local_jobs=local_jobs)
