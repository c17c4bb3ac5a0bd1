"""``dynamr run``, ``dynamr job create|run``, ``dynamr status``, ``dynamr jobs``, ``dynamr kill``, ``dynamr logs``.

``dynamr run JOB.py INPUT... -o OUT`` with no cluster starts an embedded one (a single node with one task
slot per core, replication 1, data in a temporary directory), reads the inputs in place, writes OUT as a
local directory, and stops it. With ``--cluster`` (or ``--local-cluster`` for the cluster in ./.dynamr),
local inputs are uploaded to the store first and the output is downloaded at the end; inputs and output
written ``store:/path`` stay on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from dynamr.cli.common import (
    KeyValue,
    Size,
    Target,
    cluster_options,
    connection_options,
    console,
    err_console,
    json_option,
    print_json,
    resolve_target,
)
from dynamr.cli.jobview import ProgressView, note_unsplittable, phase_counts, report
from dynamr.config import Quorum, StoreSettings
from dynamr.daemons import install_event_loop_policy
from dynamr.errors import BadRequestError, DynamrError, NotFoundError
from dynamr.files.client import FileSystem
from dynamr.localcluster import COORDINATOR, LocalCluster
from dynamr.mapreduce.compressed import CODECS
from dynamr.mapreduce.inline import check_output
from dynamr.mapreduce.submit import STORE, JobClient, build_plan, fetch_output, remote_output, stage_input
from dynamr.rpc import messages as m
from dynamr.store.client import AsyncClient
from dynamr.units import format_duration
from dynamr.web.token import web_token

T = TypeVar("T")


def job_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("-r", "--reducers", type=click.IntRange(min=0), default=None,
                     help="Reduce tasks (default: the job's, or 1; 0 runs the maps only)."),
        click.option("--split-size", type=Size(), default="64M", show_default=True,
                     help="Bytes per map task's input split."),
        click.option("-D", "defines", multiple=True, type=KeyValue(), metavar="KEY=VALUE",
                     help="Option for the job (self.options)."),
        click.option("--job-class", default=None, help="Which MRJob class, when the file defines several."),
        click.option("--skip-bad-records", is_flag=True, help="Skip mode: a record a map keeps failing on is "
                     "skipped and counted instead of failing the job."),
        click.option("--compress-output", type=click.Choice(CODECS), default=None,
                     help="Write the part files compressed (part-00000.gz; default: the job's OUTPUT_COMPRESSION)."),
    ]):
        func = option(func)
    return func


def _run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    install_event_loop_policy()

    async def main() -> T:
        return await coro_factory()

    return asyncio.run(main())


def _interrupted(target: Target, name: str, kill: bool) -> None:
    """Ctrl-C while following a job on a cluster: say what became of it (or kill it, if asked)."""
    async def settle(client: AsyncClient) -> str:
        jobs = JobClient(client)
        try:
            state = (await jobs.status(name)).state
        except NotFoundError:
            return "not submitted"
        if kill and state in ("created", "running"):
            await jobs.kill(name)
            return "killed"
        return state

    try:
        outcome = _run(lambda: _with_client(target, settle))
    except (DynamrError, KeyboardInterrupt):
        outcome = "unknown"
    if outcome == "not submitted":
        err_console.print(f"interrupted: job {name} was not submitted", highlight=False)
    elif outcome == "killed":
        err_console.print(f"interrupted: job {name} is being killed ('dynamr status {name}' shows when it has "
                          "stopped)", highlight=False, soft_wrap=True)
    elif outcome in ("created", "running", "unknown"):
        err_console.print(f"stopped following job {name}; it keeps running on the cluster. 'dynamr status "
                          f"{name}' shows its progress, 'dynamr kill {name}' stops it (or run with "
                          "--kill-on-interrupt)", highlight=False, soft_wrap=True)
    else:
        err_console.print(f"interrupted: job {name} is {outcome}", highlight=False)


def _remove_output(path: Path) -> None:
    """Delete a previous output directory, refusing anything that does not look like one."""
    foreign = [p.name for p in path.iterdir() if not (p.name.startswith("part-") or p.name == "_SUCCESS")]
    if foreign:
        raise BadRequestError(f"{path} holds files that are not job output ({', '.join(foreign[:3])}); "
                              "not removing it")
    shutil.rmtree(path)


def new_job_name(job_file: Path) -> str:
    return f"{job_file.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


async def _run_on(client: AsyncClient, name: str, job_file: Path, inputs: tuple[str, ...], output: str, *,
                  local_paths: bool, reducers: int | None, split_size: int, options: dict[str, str],
                  job_class: str | None, local_intermediate: str = "", skip_bad_records: bool = False,
                  compress_output: str | None = None) -> m.JobStatusView:
    fs = FileSystem(client)
    jobs = JobClient(client)
    await jobs.check_name(name)  # before anything is uploaded under that name
    if local_paths:
        plan = await build_plan(fs, name, job_file, inputs, output, local=True, reducers=reducers,
                                split_size=split_size, options=options, job_class=job_class,
                                local_intermediate=local_intermediate, skip_bad_records=skip_bad_records,
                                compress_output=compress_output)
    else:
        if not output.startswith(STORE):
            check_output(Path(output))
        store_inputs = []
        for item in inputs:
            with console.status(f"uploading {item}") if not item.startswith(STORE) else contextlib.nullcontext():
                store_inputs.append(await stage_input(fs, name, item))
        plan = await build_plan(fs, name, job_file, store_inputs, remote_output(name, output), local=False,
                                reducers=reducers, split_size=split_size, options=options, job_class=job_class,
                                skip_bad_records=skip_bad_records, compress_output=compress_output)
    note_unsplittable(plan)
    await jobs.submit(name, plan, job_file.read_bytes())
    view = ProgressView()
    with view.progress:
        status = await jobs.wait(name, view, view.interval)
    if not local_paths:  # the output fetched, and what this command staged in the store removed
        await fetch_output(fs, name, status, output)
        if status.state == "succeeded" and not output.startswith(STORE):
            status = dataclasses.replace(status, output=output)
    return status


@click.command("run")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output directory (local, or store:/path).")
@click.option("--name", default=None, help="Job name (default: made from the file name and time).")
@click.option("--overwrite", is_flag=True, help="Replace a local OUTPUT directory that already exists.")
@click.option("--local-cluster", is_flag=True, help="Use the cluster of 'dynamr cluster up' (in --dir) instead "
                                                     "of an embedded one.")
@click.option("--slots", type=click.IntRange(min=0), default=0,
              help="Embedded cluster: task slots (default: one per core).")
@click.option("--kill-on-interrupt", is_flag=True,
              help="On a cluster, Ctrl-C kills the job (by default it keeps running there).")
@connection_options
@job_options
def run(job_file: Path, inputs: tuple[str, ...], output: str, name: str | None, overwrite: bool,
        local_cluster: bool, slots: int, kill_on_interrupt: bool,
        cluster: str | None, secret: str | None, secret_file: Path | None, root: Path, tls_ca: Path | None,
        reducers: int | None, split_size: int, defines: tuple[tuple[str, str], ...], job_class: str | None,
        skip_bad_records: bool, compress_output: str | None) -> None:
    """Run JOB_FILE over INPUT files or directories and write OUTPUT (one command does it all).

    With no --cluster and no --local-cluster, an embedded cluster is started for the job and stopped after.
    """
    options = dict(defines)
    size = split_size
    name = name or new_job_name(job_file)
    if overwrite and not output.startswith(STORE) and Path(output).is_dir():
        _remove_output(Path(output))
    if cluster or local_cluster:
        target = resolve_target(cluster, secret, secret_file, root, tls_ca)
        try:
            status = _run(lambda: _with_client(target, lambda c: _run_on(
                c, name, job_file, inputs, output, local_paths=False, reducers=reducers, split_size=size,
                options=options, job_class=job_class, skip_bad_records=skip_bad_records,
                compress_output=compress_output)))
        except KeyboardInterrupt:
            _interrupted(target, name, kill_on_interrupt)
            raise SystemExit(130) from None
    else:
        status = _embedded(name, job_file, inputs, output, slots, reducers, size, options, job_class,
                           skip_bad_records, compress_output)
    report(status)
    if status.state != "succeeded":
        raise SystemExit(1)


async def _with_client(target: Target, action: Callable[[AsyncClient], Awaitable[T]]) -> T:
    async with target.async_client() as client:
        return await action(client)


def _embedded(name: str, job_file: Path, inputs: tuple[str, ...], output: str, slots: int,
              reducers: int | None, split_size: int, options: dict[str, str], job_class: str | None,
              skip_bad_records: bool = False, compress_output: str | None = None) -> m.JobStatusView:
    settings = StoreSettings(quorum=Quorum(n=1, r=1, w=1), fsync="never", task_slots=slots or os.cpu_count() or 1,
                             worker_heartbeat=0.1)
    with tempfile.TemporaryDirectory(prefix="dynamr-run-") as tmp:
        cluster = LocalCluster.create(Path(tmp), 1, settings, ephemeral=True)
        try:
            with console.status("starting an embedded cluster..."):
                cluster.start()

            async def go() -> m.JobStatusView:
                async with AsyncClient(cluster.seeds, cluster.secret, timeout=60) as client:
                    return await _run_on(client, name, job_file, inputs, output, local_paths=True,
                                         reducers=reducers, split_size=split_size, options=options,
                                         job_class=job_class,
                                         local_intermediate=str(cluster.data_dir(COORDINATOR).resolve()
                                                                / "intermediate"),
                                         skip_bad_records=skip_bad_records, compress_output=compress_output)

            return _run(go)
        finally:
            cluster.stop()


@click.group("job")
def job() -> None:
    """Create and run named jobs on a cluster."""


@job.command("create")
@click.argument("name")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--input", "inputs", multiple=True, required=True, help="Input path on the store (repeatable).")
@click.option("--output", required=True, help="Output directory on the store.")
@job_options
@cluster_options
def create(name: str, job_file: Path, inputs: tuple[str, ...], output: str, reducers: int | None, split_size: int,
           defines: tuple[tuple[str, str], ...], job_class: str | None, skip_bad_records: bool,
           compress_output: str | None, target: Target) -> None:
    """Store JOB_FILE in the cluster and create a job NAME over store inputs (run it with 'dynamr job run')."""

    async def action(client: AsyncClient) -> m.JobStatusView:
        plan = await build_plan(FileSystem(client), name, job_file, [i.removeprefix(STORE) for i in inputs],
                                output.removeprefix(STORE), local=False, reducers=reducers,
                                split_size=split_size, options=dict(defines),
                                job_class=job_class, skip_bad_records=skip_bad_records,
                                compress_output=compress_output)
        note_unsplittable(plan)
        return await JobClient(client).submit(name, plan, job_file.read_bytes(), run=False)

    status = _run(lambda: _with_client(target, action))
    console.print(f"created job {status.name}: {status.steps} step(s); run it with 'dynamr job run {name}'",
                  highlight=False)


@job.command("run")
@click.argument("name")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the job until it ends.")
@cluster_options
def run_named(name: str, wait: bool, target: Target) -> None:
    """Run a created job."""

    async def action(client: AsyncClient) -> m.JobStatusView:
        jobs = JobClient(client)
        status = await jobs.run(name)
        if not wait:
            return status
        view = ProgressView()
        with view.progress:
            return await jobs.wait(name, view, view.interval)

    status = _run(lambda: _with_client(target, action))
    if wait:
        report(status)
        if status.state != "succeeded":
            raise SystemExit(1)
    else:
        console.print(f"job {name} is {status.state}")


@click.command("status")
@click.argument("name")
@json_option
@cluster_options
def status(name: str, as_json: bool, target: Target) -> None:
    """Show a job's state, progress, counters, and failures with tracebacks."""
    st = _run(lambda: _with_client(target, lambda c: JobClient(c).status(name)))
    if as_json:
        print_json(st)
        return
    console.print(f"job {st.name}: [bold]{st.state}[/], step {st.step + 1}/{st.steps}, maps "
                  f"{st.maps_done}/{st.maps}, reduces {st.reduces_done}/{st.reduces}, "
                  f"{format_duration(st.seconds)}", highlight=False)
    for phase in st.phases:
        console.print(f"  step {phase.step + 1} {phase.kind}: {phase_counts(phase)}", highlight=False)
    table = Table("task", "attempt", "node", "result", title="attempts")

    def attempt_id(attempt: m.AttemptView | m.RunningAttemptView) -> str:
        return attempt.attempt.split("#")[1] + (" (backup)" if attempt.speculative else "")

    for attempt in st.attempts:
        table.add_row(attempt.task.split("/", 1)[1], attempt_id(attempt), attempt.node,
                      "ok" if attempt.ok else f"[red]{attempt.error[:80]}[/]")
    for running in st.running_attempts:
        table.add_row(running.task.split("/", 1)[1], attempt_id(running), running.node, "[cyan]running[/]")
    if st.attempts or st.running_attempts:
        console.print(table)
    if st.speculative_attempts:
        console.print(f"{st.speculative_attempts} backup attempt(s) of slow tasks started", highlight=False)
    if st.excluded_nodes:
        console.print(f"[yellow]nodes excluded from this job after repeated failures: "
                      f"{', '.join(st.excluded_nodes)}[/]", highlight=False)
    if st.state in ("succeeded", "failed", "killed"):
        report(st)


@job.command("delete")
@click.argument("name")
@cluster_options
def delete(name: str, target: Target) -> None:
    """Forget job NAME (not running): its record, its stored source, the inputs and outputs dynamr staged
    for it. Outputs it wrote where you asked stay. The name can then be used again."""
    def waiting(why: str) -> None:
        err_console.print(f"{why}: waiting", highlight=False)

    removed = _run(lambda: _with_client(target, lambda c: JobClient(c).delete(name, on_busy=waiting)))
    console.print(f"deleted job {name}" + (f" and {', '.join(removed)}" if removed else ""), highlight=False)


@click.command("kill")
@click.argument("name")
@cluster_options
def kill(name: str, target: Target) -> None:
    """Stop every task of job NAME (user code included) and delete its intermediate data."""

    async def action(client: AsyncClient) -> m.JobStatusView:
        jobs = JobClient(client)
        await jobs.kill(name)
        return await jobs.wait(name, interval=0.05)

    report(_run(lambda: _with_client(target, action)))


@click.command("logs")
@click.argument("name")
@click.argument("task", required=False, default="")
@cluster_options
def logs(name: str, task: str, target: Target) -> None:
    """Show what the attempts of job NAME printed, and the tracebacks of those that failed (of TASK only, as
    'dynamr status' names it, e.g. s0-m3). Attempts that succeeded without printing have no log."""
    reply = _run(lambda: _with_client(target, lambda c: JobClient(c).logs(name, task)))
    if not reply.logs:
        what = f"task {task} of job {name}" if task else f"job {name}"
        console.print(f"no attempt of {what} failed or printed anything", highlight=False)
        return
    for entry in reply.logs:
        outcome = "succeeded" if entry.ok else f"failed: {escape(entry.error)}"
        console.print(f"[bold]== {entry.task.split('/', 1)[-1]}, attempt {entry.attempt.split('#', 1)[-1]} on "
                      f"{entry.node}, {entry.ended - entry.started:.1f}s: {outcome}[/]", highlight=False,
                      soft_wrap=True)
        if entry.output:
            console.print(entry.output.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        if entry.traceback:
            console.print("-- traceback --", highlight=False)
            console.print(entry.traceback.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
    if reply.more:
        console.print(f"({reply.more} more log(s) left out; name a task to see its own)", highlight=False)


@click.command("dashboard")
@click.option("--open", "open_browser", is_flag=True, help="Also open it in a web browser.")
@cluster_options
def dashboard(open_browser: bool, target: Target) -> None:
    """Print the address of the cluster's web dashboard with its access token (the local cluster's unless
    --cluster is given). The same token opens each node's and the coordinator's /metrics (as a bearer
    token). Anyone with the address can see the cluster: share it as you would the secret."""
    host, port = _run(lambda: _with_client(target, lambda c: JobClient(c).web_address()))
    if not port:
        raise BadRequestError("the coordinator serves no dashboard: give it an \"http_port\" in the cluster "
                              "file's \"coordinator\" entry and restart it")
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={web_token(target.secret)}"
    click.echo(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)


@click.command("jobs")
@json_option
@cluster_options
def jobs(as_json: bool, target: Target) -> None:
    """List the cluster's jobs."""
    rows = _run(lambda: _with_client(target, lambda c: JobClient(c).jobs()))
    if as_json:
        print_json(rows)
        return
    table = Table("name", "state", "maps", "reduces", "seconds", "output")
    for row in rows:
        table.add_row(row.name, row.state, f"{row.maps_done}/{row.maps}",
                      f"{row.reduces_done}/{row.reduces}", f"{row.seconds:.1f}", row.output)
    console.print(table)
