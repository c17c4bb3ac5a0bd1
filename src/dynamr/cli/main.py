"""The ``dynamr`` command: one group, with a module per command group."""

from __future__ import annotations

import click

from dynamr import __version__
from dynamr.cli.cluster import cluster
from dynamr.cli.demo import demo
from dynamr.cli.fs import fs
from dynamr.cli.jobs import job, jobs, kill, run, status
from dynamr.cli.kv import kv
from dynamr.cli.node import coordinator, node


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dynamr")
def cli() -> None:
    """dynamr: MapReduce over a Dynamo-style replicated key-value store."""


cli.add_command(cluster)
cli.add_command(node)
cli.add_command(coordinator)
cli.add_command(kv)
cli.add_command(fs)
cli.add_command(demo)
cli.add_command(run)
cli.add_command(job)
cli.add_command(status)
cli.add_command(jobs)
cli.add_command(kill)


def main() -> None:
    cli(prog_name="dynamr")
