"""``dynamr fs``: put, get, cat, ls, stat, rm, locate and gc for files on the store."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from dynamr.cli.common import Size, Target, cluster_options, console, json_option, print_json
from dynamr.daemons import install_event_loop_policy
from dynamr.files import FileSystem, paths
from dynamr.files.manifest import DEFAULT_CHUNK_SIZE

T = TypeVar("T")
#: below this many bytes no progress bar is drawn
PROGRESS_THRESHOLD = 16 * 1024 * 1024


def run(target: Target, action: Callable[[FileSystem], Awaitable[T]], chunk_size: int = DEFAULT_CHUNK_SIZE) -> T:
    async def main() -> T:
        async with target.async_client() as client:
            return await action(FileSystem(client, chunk_size=chunk_size))

    install_event_loop_policy()
    return asyncio.run(main())


def progress_bar(total: int) -> Progress:
    quiet = total < PROGRESS_THRESHOLD or not console.is_terminal
    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), console=console, disable=quiet)


@click.group()
def fs() -> None:
    """Files on the store (chunked, replicated, checksummed)."""


@fs.command("put")
@click.argument("local", type=click.Path(exists=True, path_type=Path))
@click.argument("remote")
@click.option("--chunk-size", type=Size(), default=DEFAULT_CHUNK_SIZE, show_default=True, help="Bytes per chunk.")
@cluster_options
def put(local: Path, remote: str, chunk_size: int, target: Target) -> None:
    """Upload a file or a whole directory. REMOTE ending in '/' or naming a directory receives LOCAL's name."""
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)

    async def action(fsys: FileSystem) -> int:
        dest = paths.normalize(remote)
        if remote.endswith("/") or await fsys.is_dir(dest):
            dest = paths.join(dest, local.name)
        started = time.perf_counter()
        with progress_bar(total) as bar:
            task = bar.add_task(f"put {local.name}", total=total)
            for file in files:
                where = dest if local.is_file() else paths.join(dest, file.relative_to(local).as_posix())
                await fsys.put_file(file, where, progress=lambda n: bar.advance(task, n))
        elapsed = time.perf_counter() - started
        console.print(f"stored {len(files)} file(s), {total:,} bytes under {dest} "
                      f"({total / max(elapsed, 1e-9) / 1e6:.1f} MB/s)", highlight=False)
        return len(files)

    run(target, action, chunk_size)


@fs.command("get")
@click.argument("remote")
@click.argument("local", type=click.Path(path_type=Path))
@cluster_options
def get(remote: str, local: Path, target: Target) -> None:
    """Download a file (or a directory, recursively) to LOCAL."""

    async def action(fsys: FileSystem) -> None:
        src = paths.normalize(remote)
        stat = await fsys.stat(src)
        if stat.kind == "file":
            files = [(src, local / paths.name(src) if local.is_dir() else local, stat.size)]
        else:
            base = local / paths.name(src) if local.is_dir() and src != "/" else local
            files = [(p, base / p[len(src):].lstrip("/"), mf.size) async for p, mf in fsys.walk_manifests(src)]
        total = sum(size for _, _, size in files)
        with progress_bar(total) as bar:
            task = bar.add_task(f"get {paths.name(src) or '/'}", total=total)
            for path, dest, _ in files:
                dest.parent.mkdir(parents=True, exist_ok=True)
                await fsys.get_file(path, dest, progress=lambda n: bar.advance(task, n))
        console.print(f"fetched {len(files)} file(s), {total:,} bytes into {local}", highlight=False)

    run(target, action)


@fs.command("cat")
@click.argument("remote")
@cluster_options
def cat(remote: str, target: Target) -> None:
    """Write a file's bytes to standard output."""

    async def action(fsys: FileSystem) -> None:
        out = sys.stdout.buffer
        async for piece in fsys.read(remote):
            out.write(piece)
        out.flush()

    run(target, action)


@fs.command("ls")
@click.argument("remote", default="/")
@click.option("-l", "long", is_flag=True, help="Show kind, size and modification time.")
@json_option
@cluster_options
def ls(remote: str, long: bool, as_json: bool, target: Target) -> None:
    """List a directory."""
    entries = run(target, lambda fsys: fsys.ls(remote, long=long or as_json))
    if as_json:
        print_json(entries)
        return
    for entry in entries:
        name = entry.name + ("/" if entry.kind == "directory" else "")
        if long:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime)) if entry.mtime else "-"
            click.echo(f"{'d' if entry.kind == 'directory' else '-'} {entry.size:>14,} {when:>16}  {name}")
        else:
            click.echo(name)


@fs.command("stat")
@click.argument("remote")
@cluster_options
def stat(remote: str, target: Target) -> None:
    """Show a file's size, chunks and time, or a directory's entry count."""
    st = run(target, lambda fsys: fsys.stat(remote))
    click.echo(f"path:    {st.path}\nkind:    {st.kind}")
    if st.kind == "file":
        click.echo(f"size:    {st.size:,} bytes\nchunks:  {st.chunks} x {st.chunk_size:,} bytes\n"
                   f"mtime:   {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.mtime))}")
    else:
        click.echo(f"entries: {st.entries}")


@fs.command("rm")
@click.argument("remote")
@click.option("-r", "recursive", is_flag=True, help="Remove a directory and everything under it.")
@cluster_options
def rm(remote: str, recursive: bool, target: Target) -> None:
    """Remove a file (or a directory with -r). Chunks are freed by 'dynamr fs gc'."""
    removed = run(target, lambda fsys: fsys.rm(remote, recursive=recursive))
    console.print(f"removed {paths.normalize(remote)} ({removed} file(s))", highlight=False)


@fs.command("locate")
@click.argument("remote")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--length", type=click.IntRange(min=-1), default=-1, help="Bytes from --offset (default: to the end).")
@cluster_options
def locate(remote: str, offset: int, length: int, target: Target) -> None:
    """Show which nodes hold each chunk of a byte range."""
    located = run(target, lambda fsys: fsys.locate(remote, offset, length))
    table = Table(title=f"{paths.normalize(remote)}")
    for col in ("chunk", "bytes", "chunk id", "nodes"):
        table.add_column(col)
    for loc in located:
        table.add_row(str(loc.index), f"{loc.file_offset:,}-{loc.file_offset + loc.length - 1:,}",
                      loc.chunk_id.hex()[:16], ", ".join(loc.nodes) or "[red]none[/]")
    console.print(table)


@fs.command("gc")
@click.option("--grace", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Keep unreferenced chunks younger than this many seconds (uploads in progress).")
@cluster_options
def gc(grace: float, target: Target) -> None:
    """Free chunks that no file or job references any more."""
    freed = run(target, lambda fsys: fsys.collect_garbage(grace))
    note = (f" (chunks stored in the last {grace:g} s are kept: give a smaller --grace to free them too)"
            if grace > 0 and not freed else "")
    console.print(f"freed {freed} chunk replica(s){note}", highlight=False)
