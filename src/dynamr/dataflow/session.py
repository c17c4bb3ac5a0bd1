"""Where jobs and graphs run: :class:`Session`, an embedded cluster of this process or a running cluster,
and jobs run from Python with their output read back as records.

    from dynamr.dataflow import Session
    with Session.start_embedded() as session:
        for word, count in session.run_job(WordCount, ["books/"]):
            ...

An embedded session (one node, one task slot per core, data in a temporary directory) reads inputs in
place and is stopped by ``close()``; :meth:`Session.connect` uses a running cluster, uploading local
inputs first and fetching outputs after. :mod:`dynamr.dataflow.run` runs graphs on a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dynamr.config import Quorum, StoreSettings
from dynamr.errors import BadRequestError, DynamrError, NotFoundError
from dynamr.files.client import FileSystem
from dynamr.localcluster import COORDINATOR, DEFAULT_DIR, LocalCluster
from dynamr.mapreduce.api import MRJob
from dynamr.mapreduce.compressed import decompressed
from dynamr.mapreduce.inline import DEFAULT_SPLIT_SIZE
from dynamr.mapreduce.runs import decode_run
from dynamr.mapreduce.submit import STORE, JobClient, build_plan, fetch_output, remote_output, stage_input
from dynamr.rpc import messages as m
from dynamr.rpc import tls
from dynamr.store.client import AsyncClient

T = TypeVar("T")


class JobFailedError(DynamrError):
    """A job (or a stage of a graph) failed; the message has the task's traceback."""


def failure_text(status: m.JobStatusView) -> str:
    error = status.error or m.JobFailure()
    split = error.input
    where = f" on {split.path} bytes {split.start}-{split.end}" if split else ""
    printed = f"\nwhat the attempt printed (the end of it):\n{error.output[-4000:]}" if error.output else ""
    return (f"job {status.name} {status.state}: task {error.task or '?'}{where}:\n"
            f"{error.traceback or error.error}{printed}")


class Session:
    """Where jobs and graphs run."""

    def __init__(self, seeds: list[tuple[str, int]], secret: bytes, *, cluster: LocalCluster | None = None,
                 embedded_dir: Path | None = None, tls_ca: Path | None = None, partitions: int = 4,
                 split_size: int = DEFAULT_SPLIT_SIZE) -> None:
        self.seeds = seeds
        self.secret = secret
        self.tls_ca = tls_ca
        self._cluster = cluster
        self._dir = embedded_dir
        #: reduce tasks of a shuffle when the operation does not say
        self.partitions = partitions
        self.split_size = split_size
        #: the jobs and graphs of a session are one program, so they share task processes (as a Spark
        #: application's jobs share its executors): a later run starts in the processes an earlier one left
        self.process_group = f"session-{secrets.token_hex(8)}"

    @property
    def embedded(self) -> bool:
        return self._dir is not None

    @classmethod
    def start_embedded(cls, slots: int | None = None, split_size: int = DEFAULT_SPLIT_SIZE) -> Session:
        """An embedded cluster of this process (stopped by :meth:`close`, or when this process ends)."""
        slots = slots or os.cpu_count() or 1
        settings = StoreSettings(quorum=Quorum(n=1, r=1, w=1), fsync="never", task_slots=slots,
                                 worker_heartbeat=0.1)
        root = Path(tempfile.mkdtemp(prefix="dynamr-session-"))
        cluster = LocalCluster.create(root / "cluster", 1, settings, ephemeral=True)
        try:
            cluster.start()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cls(cluster.seeds, cluster.secret, cluster=cluster, embedded_dir=root, partitions=slots,
                   split_size=split_size)

    @classmethod
    def connect(cls, cluster: str | None = None, secret: str | None = None, secret_file: Path | None = None,
                root: Path = Path(DEFAULT_DIR), tls_ca: Path | None = None, partitions: int = 4) -> Session:
        """A running cluster: ``cluster`` is ``HOST:PORT[,...]`` (with its secret), or else the local cluster of
        ``dynamr cluster up`` in ``root``."""
        from dynamr.cli.common import resolve_target

        target = resolve_target(cluster, secret, secret_file, root, tls_ca)
        return cls(target.seeds, target.secret, tls_ca=target.tls_ca, partitions=partitions)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ----------------------------------------------------------------------------------------

    def call(self, action: Callable[[AsyncClient], Awaitable[T]]) -> T:
        async def go() -> T:
            ctx = tls.client_context(self.tls_ca) if self.tls_ca else None
            async with AsyncClient(self.seeds, self.secret, timeout=60, ssl_context=ctx) as client:
                return await action(client)

        return asyncio.run(go())

    def scratch(self, name: str) -> str:
        """A fresh directory for intermediate results: local for an embedded session, else on the store."""
        if self._dir is not None:
            path = self._dir / "work" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            return str(path)
        return f"{STORE}/_dataflow/{name}"

    # --- jobs --------------------------------------------------------------------------------------------

    def run_job(self, job: type[MRJob] | str | Path, inputs: Sequence[str | Path], output: str | Path | None = None,
                *, reducers: int | None = None, options: dict[str, str] | None = None,
                split_size: int | None = None, name: str | None = None) -> JobOutput:
        """Run a job class (or job file) over ``inputs``; its output directory (a temporary one when not
        given) can be iterated as Python records (mrjob's ``make_runner``/``cat_output``)."""
        if isinstance(job, type):
            path, job_class = _source_file(job), job.__name__
        else:
            path, job_class = Path(job), None
        name = name or f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        keep = output is not None
        target = str(output) if output is not None else self.scratch(f"{name}-out")
        status = self.call(lambda c: self._run(c, name, path, path.read_text(), [str(i) for i in inputs], target,
                                               reducers=reducers, options=options or {}, job_class=job_class,
                                               split_size=split_size or self.split_size,
                                               process_group=self.process_group))
        if status.state != "succeeded":
            raise JobFailedError(failure_text(status))
        fmt = _output_format(path.read_text(), str(path), job_class)
        return JobOutput(self, target, fmt, status, temporary=not keep)

    async def _run(self, client: AsyncClient, name: str, path: Path, source: str, inputs: list[str], output: str,
                   *, reducers: int | None, options: dict[str, str], job_class: str | None, split_size: int,
                   on_part: Callable[[bytes], None] | None = None, process_group: str = "",
                   compress_output: str | None = None) -> m.JobStatusView:
        """Submit a job and follow it to its end; with ``on_part``, each part file of the output is given
        to it as soon as it and every part before it are written (so ordered output stays in order)."""
        fs = FileSystem(client)
        jobs = JobClient(client)
        await jobs.check_name(name)
        local = self.embedded
        if local:
            if any(i.startswith(STORE) for i in inputs) or output.startswith(STORE):
                raise BadRequestError("an embedded session reads and writes local files; connect to a cluster "
                                      "for store: paths")
            plan_ = await build_plan(fs, name, path, inputs, output, local=True, reducers=reducers,
                                     split_size=split_size, options=options, job_class=job_class, source=source,
                                     local_intermediate=str(self._coordinator_dir() / "intermediate"),
                                     process_group=process_group, compress_output=compress_output)
        else:
            remote_inputs = [await stage_input(fs, name, i) for i in inputs]
            plan_ = await build_plan(fs, name, path, remote_inputs, remote_output(name, output), local=False,
                                     reducers=reducers, split_size=split_size, options=options,
                                     job_class=job_class, source=source, process_group=process_group,
                                     compress_output=compress_output)
        await jobs.submit(name, plan_, source.encode())
        if on_part is None:
            status = await jobs.wait(name)
        else:
            status = await self._follow(fs, jobs, name, output, on_part)
        if not local:
            await fetch_output(fs, name, status, output)
        with contextlib.suppress(DynamrError):
            if status.state == "succeeded":
                await jobs.delete(name)
        return status

    async def _follow(self, fs: FileSystem, jobs: JobClient, name: str, output: str,
                      on_part: Callable[[bytes], None]) -> m.JobStatusView:
        waiter = asyncio.ensure_future(jobs.wait(name))
        delivered = 0
        try:
            while not waiter.done():
                delivered = await self._deliver(fs, output, delivered, on_part, final=False)
                await asyncio.wait([waiter], timeout=0.2)
        finally:
            if not waiter.done():
                waiter.cancel()
        status = waiter.result()
        if status.state == "succeeded":
            await self._deliver(fs, output, delivered, on_part, final=True)
        return status

    async def _deliver(self, fs: FileSystem, output: str, delivered: int, on_part: Callable[[bytes], None],
                       final: bool) -> int:
        """Give ``on_part`` the parts from number ``delivered`` on that are written; the number reached."""
        if output.startswith(STORE):
            stored = {p.rsplit("/", 1)[1]: p for p in await store_parts(fs, output[len(STORE):])}
        else:
            stored = {p.name: str(p) for p in Path(output).glob("part-*")}
        while True:
            name = f"part-{delivered:05d}"
            if name not in stored:
                later = sorted(n for n in stored if n[5:].isdigit() and int(n[5:]) > delivered)
                if not final or not later:
                    break
                name = later[0]  # at the end, a number no task wrote is skipped
            data = (await fs.read_bytes(stored[name])) if output.startswith(STORE) else Path(stored[name]).read_bytes()
            on_part(data)
            delivered = int(name.removeprefix("part-")) + 1
        return delivered

    def _coordinator_dir(self) -> Path:
        assert self._cluster is not None
        return self._cluster.data_dir(COORDINATOR).resolve()

    def read_parts(self, directory: str) -> Iterator[bytes]:
        """The bytes of each part file of an output directory, in order (a part per item; a compressed part
        decompressed)."""
        if directory.startswith(STORE):
            names = self.call(lambda c: store_parts(FileSystem(c), directory[len(STORE):]))
            for part in names:
                yield decompressed(self.call(lambda c, p=part: FileSystem(c).read_bytes(p)),  # type: ignore[misc]
                                   part)
            return
        for local in sorted(Path(directory).glob("part-*")):
            yield decompressed(local.read_bytes(), local.name)

    def remove(self, directory: str) -> None:
        if directory.startswith(STORE):
            with contextlib.suppress(NotFoundError):
                self.call(lambda c: FileSystem(c).rm(directory[len(STORE):], recursive=True))
        else:
            shutil.rmtree(directory, ignore_errors=True)


def _source_file(cls: type) -> Path:
    """The file a job class was defined in (its module's, or its methods' when the module is not imported
    by name)."""
    with contextlib.suppress(TypeError, OSError):
        found = inspect.getsourcefile(cls)
        if found:
            return Path(found)
    for value in vars(cls).values():
        code = getattr(value, "__code__", None)
        if code is not None and Path(code.co_filename).is_file():
            return Path(code.co_filename)
    raise BadRequestError(f"cannot find the source file of {cls.__name__}: define the job in a file")


async def store_parts(fs: FileSystem, directory: str) -> list[str]:
    return sorted([path async for path, _ in fs.walk_manifests(directory)
                   if path.rsplit("/", 1)[1].startswith("part-")])


def _output_format(source: str, filename: str, job_class: str | None) -> str:
    from dynamr.mapreduce.loader import load_job_class

    return load_job_class(source, filename, job_class).OUTPUT_FORMAT


@dataclass
class JobOutput:
    """A finished job's output: iterate it for its (key, value) records, part by part."""

    session: Session
    directory: str
    fmt: str
    status: m.JobStatusView
    temporary: bool = False

    def __iter__(self) -> Iterator[Any]:
        for data in self.session.read_parts(self.directory):
            yield from parse_part(data, self.fmt)

    @property
    def counters(self) -> dict[tuple[str, str], int]:
        return {(group, name): value for group, name, value in self.status.counters}

    def remove(self) -> None:
        """Delete the output (a temporary one is deleted by this; a given one is the caller's)."""
        self.session.remove(self.directory)


def parse_part(data: bytes, fmt: str) -> Iterator[Any]:
    """The records of one part file of a job's output format."""
    if fmt == "records":
        yield from decode_run([data])
        return
    for line in data.decode().splitlines():
        key, tab, value = line.partition("\t")
        if fmt == "json":
            yield json.loads(key), json.loads(value)
        else:
            yield (key, value) if tab else (None, key)
