"""The ``dynamr`` command: one group, with a module per command group, and the one place errors are shown.

Every :class:`~dynamr.errors.DynamrError` (and an operating-system error such as a missing or unreadable
file) becomes one line on stderr and exit status 1, whichever command raised it and whether it came from
resolving options, connecting or running. Anything else is a bug: one line naming it and a private file
with the traceback; ``--debug`` (or ``DYNAMR_DEBUG=1``) prints the traceback instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from typing import Any

import click

from dynamr import __version__
from dynamr.cli.cluster import cluster
from dynamr.cli.common import err_console, report_error
from dynamr.cli.demo import demo
from dynamr.cli.fs import fs
from dynamr.cli.jobs import dashboard, job, jobs, kill, logs, run, status
from dynamr.cli.kv import kv
from dynamr.cli.node import coordinator, node
from dynamr.errors import DynamrError


class DynamrCli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DynamrError as exc:
            report_error(exc)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            err_console.print(f"[bold red]error:[/] {exc.strerror or exc}{where}", highlight=False, soft_wrap=True)
        except Exception as exc:
            _unexpected(exc, bool(ctx.meta.get("dynamr.debug")))
        sys.exit(1)


def _unexpected(exc: Exception, debug: bool) -> None:
    text = "".join(traceback.format_exception(exc))
    if debug:
        sys.stderr.write(text)
        return
    fd, path = tempfile.mkstemp(prefix="dynamr-error-", suffix=".log")  # private to this user (0600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc} (this is a bug in dynamr; "
                      f"the traceback is in {path}, and --debug prints it)", highlight=False, soft_wrap=True)


def _debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["dynamr.debug"] = value
    return value


@click.group(cls=DynamrCli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dynamr")
@click.option("--debug", is_flag=True, envvar="DYNAMR_DEBUG", expose_value=False, is_eager=True, callback=_debug,
              help="Print the full traceback of an unexpected error.")
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
cli.add_command(logs)
cli.add_command(dashboard)


def main() -> None:
    cli(prog_name="dynamr")
