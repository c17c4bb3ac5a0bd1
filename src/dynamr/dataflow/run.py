"""Running from Python: a :class:`Session` (an embedded cluster, or a cluster), jobs and dataflow graphs.

    from dynamr.dataflow import Session
    with Session.embedded() as session:
        out = session.run_job(WordCount, ["books/"])
        for word, count in out:
            ...

A session with no cluster named starts an embedded one (one node, one task slot per core, data in a
temporary directory, inputs read in place) and stops it on ``close()``; :meth:`Session.connect` uses a
running cluster, uploading local inputs first and fetching outputs after. A graph runs stage by stage in
the planner's order (:mod:`dynamr.dataflow.plan`), each stage a job of the engine; records to collect are
read back from its output, a part at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dynamr.config import Quorum, StoreSettings
from dynamr.dataflow.graph import ENGINE, SOURCE_FORMATS, Dataset, Output, check, resolve, unused_sources
from dynamr.dataflow.plan import Plan, Stage, plan
from dynamr.dataflow.stage import InputSpec, PathSpec, StageSpec, job_source
from dynamr.errors import BadRequestError, DynamrError, NotFoundError
from dynamr.files.client import FileSystem
from dynamr.localcluster import COORDINATOR, DEFAULT_DIR, LocalCluster
from dynamr.mapreduce.api import MRJob
from dynamr.mapreduce.inline import DEFAULT_SPLIT_SIZE, expand_inputs
from dynamr.mapreduce.shuffle import decode_run, encode_run
from dynamr.mapreduce.submit import JobClient, build_plan
from dynamr.rpc import messages as m
from dynamr.rpc import tls
from dynamr.store.client import AsyncClient

T = TypeVar("T")
STORE = "store:"


class JobFailedError(DynamrError):
    """A job (or a stage of a graph) failed; the message has the task's traceback."""


def failure_text(status: m.JobStatusView) -> str:
    error = status.error or m.JobFailure()
    split = error.input
    where = f" on {split.path} bytes {split.start}-{split.end}" if split else ""
    return (f"job {status.name} {status.state}: task {error.task or '?'}{where}:\n"
            f"{error.traceback or error.error}")


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
        self.last_seconds: list[float] = []

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
                                               split_size=split_size or self.split_size))
        if status.state != "succeeded":
            raise JobFailedError(failure_text(status))
        fmt = _output_format(path.read_text(), str(path), job_class)
        return JobOutput(self, target, fmt, status, temporary=not keep)

    async def _run(self, client: AsyncClient, name: str, path: Path, source: str, inputs: list[str], output: str,
                   *, reducers: int | None, options: dict[str, str], job_class: str | None, split_size: int,
                   on_part: Callable[[bytes], None] | None = None) -> m.JobStatusView:
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
                                     local_intermediate=str(self._coordinator_dir() / "intermediate"))
        else:
            remote_inputs = [await self._upload(fs, name, i) for i in inputs]
            remote_output = output[len(STORE):] if output.startswith(STORE) else f"/_outputs/{name}"
            plan_ = await build_plan(fs, name, path, remote_inputs, remote_output, local=False, reducers=reducers,
                                     split_size=split_size, options=options, job_class=job_class, source=source)
        await jobs.submit(name, plan_, source.encode())
        if on_part is None:
            status = await jobs.wait(name)
        else:
            status = await self._follow(fs, jobs, name, output, on_part)
        if not local:
            if status.state == "succeeded" and not output.startswith(STORE):
                Path(output).mkdir(parents=True, exist_ok=True)
                async for stored, _ in fs.walk_manifests(plan_.output):
                    await fs.get_file(stored, Path(output) / stored.rsplit("/", 1)[1])
            for staged in (f"/_inputs/{name}", "" if output.startswith(STORE) else f"/_outputs/{name}"):
                if staged:
                    with contextlib.suppress(NotFoundError):
                        await fs.rm(staged, recursive=True)
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
            stored = {p.rsplit("/", 1)[1]: p for p in await _store_parts(fs, output[len(STORE):])}
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

    async def _upload(self, fs: FileSystem, name: str, item: str) -> str:
        if item.startswith(STORE):
            return item[len(STORE):]
        local = Path(item)
        if not local.exists():
            raise NotFoundError(f"input {item} does not exist")
        remote = f"/_inputs/{name}/{secrets.token_hex(3)}-{local.name}"
        if local.is_dir():
            await fs.put_tree(local, remote)
        else:
            await fs.put_file(local, remote)
        return remote

    def _coordinator_dir(self) -> Path:
        assert self._cluster is not None
        return self._cluster.data_dir(COORDINATOR).resolve()

    def read_parts(self, directory: str) -> Iterator[bytes]:
        """The bytes of each part file of an output directory, in order (a part per item)."""
        if directory.startswith(STORE):
            names = self.call(lambda c: _store_parts(FileSystem(c), directory[len(STORE):]))
            for part in names:
                yield self.call(lambda c, p=part: FileSystem(c).read_bytes(p))  # type: ignore[misc]
            return
        for local in sorted(Path(directory).glob("part-*")):
            yield local.read_bytes()

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


async def _store_parts(fs: FileSystem, directory: str) -> list[str]:
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


# --- graphs -------------------------------------------------------------------------------------------------


@dataclass
class Results:
    """Collected records per data set (``results[dataset]``), and the plan that ran."""

    records: dict[int, list[Any]] = field(default_factory=dict)
    plan: Plan | None = None
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, dataset: Dataset) -> list[Any]:
        return self.records[id(resolve(dataset))]


def run_graph(outputs: Sequence[Output], session: Session | None) -> Results:
    own = session is None
    session = session or Session.start_embedded()
    try:
        return _Runner(session, outputs).run()
    finally:
        if own:
            session.close()


class _Runner:
    def __init__(self, session: Session, outputs: Sequence[Output]) -> None:
        self.session = session
        self.outputs = list(outputs)
        self.plan = plan(self.outputs)
        self.run_id = f"flow-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        #: id(dataset) -> directory holding its records (stage results, fed values)
        self.stored: dict[int, str] = {}
        self.scratch: list[str] = []
        #: id(source) -> its files on the store (a cluster session uploads local sources once per run)
        self.uploaded: dict[int, list[str]] = {}

    def run(self) -> Results:
        results = Results(plan=self.plan)
        needed = check(self.outputs)
        flow = self.outputs[0].dataset.flow
        results.warnings = [f"source {d.label} feeds none of the outputs run" for d in unused_sources(flow, needed)]
        for message in results.warnings:
            warnings.warn(message, stacklevel=4)
        later = {id(p.source) for s in self.plan.stages for p in s.paths}
        try:
            for stage in self.plan.stages:
                self._run_stage(stage, id(stage.result) in later, results)
        finally:
            for directory in [*self.scratch, self.session.scratch(self.run_id)]:
                self.session.remove(directory)
        return results

    def _run_stage(self, stage: Stage, needed_later: bool, results: Results) -> None:
        collects = [o for o in stage.outputs if o.kind == "collect"]
        writes = [o for o in stage.outputs if o.kind == "write"]
        direct = len(writes) == 1 and not collects and not needed_later
        spec = self._spec(stage, writes[0].fmt if direct else "records")
        target = writes[0].path if direct else self.session.scratch(f"{self.run_id}/stage-{stage.number}")
        if not direct:
            self.scratch.append(target)
            self.stored[id(stage.result)] = target
        records: list[Any] = results.records.setdefault(id(stage.result), []) if collects else []

        callbacks = [c.callback for c in collects if c.callback is not None]
        listed = len(callbacks) < len(collects)  # some collect output wants the records returned

        def on_part(data: bytes) -> None:
            for _, value in decode_run([data]):
                for callback in callbacks:
                    callback(value)
                if listed:
                    records.append(value)

        self._submit(spec, f"{self.run_id}-s{stage.number}", target, stage, on_part=on_part if collects else None)
        for write in ([] if direct else writes):
            copy = StageSpec(files={}, inputs=[InputSpec("records", [PathSpec([], [], [])])], output=write.fmt)
            self._submit(copy, f"{self.run_id}-s{stage.number}-w", write.path, None, source_dir=target)
        # (collected records arrived while the stage ran: see _submit's on_part)

    def _spec(self, stage: Stage, output: str) -> StageSpec:
        inputs: list[InputSpec] = []
        by_source: dict[int, int] = {}
        for path in stage.paths:
            index = by_source.get(id(path.source))
            if index is None:
                index = by_source[id(path.source)] = len(inputs)
                fmt = SOURCE_FORMATS.get(path.source.kind, "records")
                inputs.append(InputSpec(fmt, []))
            inputs[index].paths.append(PathSpec([d.kind for d in path.ops], [d.fn for d in path.ops],
                                                [d.args for d in path.ops], path.side))
        wide = stage.wide
        post = PathSpec([d.kind for d in stage.post], [d.fn for d in stage.post], [d.args for d in stage.post]) \
            if stage.post else None
        spec = StageSpec(files={}, inputs=inputs, wide=None if wide is None else wide.kind,
                         fn=None if wide is None else wide.fn,
                         args={} if wide is None else {k: v for k, v in wide.args.items() if k != "partitions"},
                         post=post, output=output)
        spec.files = {}
        for path in stage.paths:
            for file in self._files(path.source):
                spec.files[file] = by_source[id(path.source)]
        return spec

    def _files(self, source: Dataset) -> list[str]:
        """The input files of a stage's input (resolved as the engine will name them)."""
        if id(source) in self.stored:
            return self._list(self.stored[id(source)])
        if source.kind == "feed":
            self.stored[id(source)] = self._feed(source)
            return self._list(self.stored[id(source)])
        paths = source.args["paths"]
        if self.session.embedded:
            if any(p.startswith(STORE) for p in paths):
                raise BadRequestError(f"{source.label}: an embedded session reads local files; connect to a "
                                      "cluster for store: paths")
            return [str(f.resolve()) for f in expand_inputs([Path(p) for p in paths])]
        if id(source) not in self.uploaded:  # once per source, however many paths read it
            self.uploaded[id(source)] = self.session.call(lambda c: self._upload_source(FileSystem(c), source))
        return self.uploaded[id(source)]

    async def _upload_source(self, fs: FileSystem, source: Dataset) -> list[str]:
        out: list[str] = []
        for item in source.args["paths"]:
            remote = await self.session._upload(fs, self.run_id, item)
            if not item.startswith(STORE):
                self.scratch.append(f"{STORE}/_inputs/{self.run_id}")
            stat = await fs.stat(remote)
            if stat.kind == "file":
                out.append(stat.path)
            else:
                out.extend([p async for p, _ in fs.walk_manifests(stat.path)])
        return out

    def _list(self, directory: str) -> list[str]:
        if directory.startswith(STORE):
            return [f"{STORE}{p}" for p in self.session.call(lambda c: _store_parts(FileSystem(c),
                                                                                   directory[len(STORE):]))]
        return [str(p.resolve()) for p in sorted(Path(directory).glob("part-*"))]

    def _feed(self, source: Dataset) -> str:
        """Fed values, written as files of records split for the map tasks."""
        values = source.args["values"]
        pieces = max(1, min(self.session.partitions, len(values)))
        local = Path(tempfile.mkdtemp(prefix="dynamr-feed-"))
        try:
            for i in range(pieces):
                chunk = values[len(values) * i // pieces:len(values) * (i + 1) // pieces]
                with open(local / f"part-{i:05d}", "wb") as out:
                    for block in encode_run(zip(itertools.repeat(None), chunk)):
                        out.write(block)
            if self.session.embedded:
                target = self.session.scratch(f"{self.run_id}/feed-{source.number}")
                shutil.move(str(local), target)
                self.scratch.append(target)
                return target
            remote = f"/_dataflow/{self.run_id}/feed-{source.number}"
            self.session.call(lambda c: FileSystem(c).put_tree(local, remote))
            self.scratch.append(f"{STORE}{remote}")
            return f"{STORE}{remote}"
        finally:
            shutil.rmtree(local, ignore_errors=True)

    def _submit(self, spec: StageSpec, name: str, output: str, stage: Stage | None, source_dir: str = "",
                on_part: Callable[[bytes], None] | None = None) -> None:
        if source_dir:
            files = self._list(source_dir)
            spec.files = {f: 0 for f in files}
        inputs = [f[len(STORE):] if f.startswith(STORE) else f for f in spec.files]
        spec.files = {k[len(STORE):] if k.startswith(STORE) else k: v for k, v in spec.files.items()}
        reducers = None
        if stage is not None and stage.wide is not None:
            reducers = stage.wide.args.get("partitions") or self.session.partitions
        source = job_source(spec, name)
        started = time.perf_counter()
        status = self.session.call(lambda c: self.session._run(
            c, name, Path(f"{name}.py"), source, [f"{STORE}{i}" if not self.session.embedded else i
                                                  for i in inputs],
            output, reducers=reducers, options={}, job_class="Stage", split_size=self.session.split_size,
            on_part=on_part))
        self.session.last_seconds.append(time.perf_counter() - started)
        if status.state != "succeeded":
            raise JobFailedError(failure_text(status))


def explain(outputs: Sequence[Output]) -> str:
    return plan(outputs).explain()


ENGINE.update(run=run_graph, explain=explain)
