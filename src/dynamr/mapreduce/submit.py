"""Client side of a job: turn a job file and inputs into a plan, submit it, and follow it.

The job file is loaded here, on the user's machine (never in the coordinator): its steps, reducers and
formats become a :class:`~dynamr.mapreduce.jobrun.JobPlan`, and a job that asks for a sample of its keys
(range partitioning) gets it here. The source file is stored in the cluster under ``/_jobs/<name>/`` so
that every task imports exactly the code that was submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dynamr.config import WILDCARD_HOSTS
from dynamr.errors import (
    BadRequestError,
    BusyError,
    ClusterNotFoundError,
    DeadlineExceededError,
    DynamrError,
    NotFoundError,
    ProtocolError,
    UnavailableError,
)
from dynamr.files.client import FileSystem
from dynamr.files.manifest import DEFAULT_CHUNK_SIZE
from dynamr.mapreduce.api import MRJob, check_compression, check_formats
from dynamr.mapreduce.compressed import Decompressed, codec_of
from dynamr.mapreduce.inline import check_output, sample_keys
from dynamr.mapreduce.inputs import expand_inputs, is_pattern, store_inputs
from dynamr.mapreduce.jobplan import check_plan
from dynamr.mapreduce.jobrun import ENDED, JobPlan, StepPlan
from dynamr.mapreduce.loader import load_job_class
from dynamr.mapreduce.splits import WHOLE_FILE_FORMATS, LocalFile, Split, plan_splits
from dynamr.rpc import messages as m
from dynamr.rpc.codec import pack_any
from dynamr.store.client import AsyncClient

SAMPLE_BYTES = 256 * 1024
#: the prefix of a path on the store, where a local path is also allowed
STORE = "store:"
#: seconds a client following a job lets the coordinator hold each status request (it answers at the end)
FOLLOW_WAIT = 10.0


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, length: int) -> Iterator[bytes]:
        yield self.data[offset:offset + length]


async def _sample(job: MRJob, fs: FileSystem, inputs: list[tuple[str, int]], local: bool,
                  split_size: int) -> list[Any]:
    # cut as the job's tasks will be: a file read whole (records between dataflow stages) is never entered
    # in its middle, where its bytes do not start a record
    splits = plan_splits(inputs, split_size, whole_files=job.INPUT_FORMAT in WHOLE_FILE_FORMATS,
                         whole=frozenset(path for path, _ in inputs if job.whole_input(path)))
    chosen = splits if len(splits) <= 20 else random.Random(1).sample(splits, 20)
    reader = job.input_reader()
    sources = []
    for split in chosen:
        if local:
            sources.append(reader(LocalFile(Path(split.path)), split))
        else:
            data = await fs.read_bytes(split.path, split.start, min(SAMPLE_BYTES, split.length))
            head = Split(index=0, path=split.path, start=0, end=len(data), file_size=len(data))
            codec = codec_of(split.path)  # a compressed file's first bytes: the start of its stream
            sources.append(reader(_Bytes(data) if codec is None else
                                  Decompressed(_Bytes(data), codec, len(data), split.path, truncated_ok=True), head))
    return sample_keys(job, sources)


async def build_plan(fs: FileSystem, name: str, job_file: Path, inputs: Sequence[str], output: str, *,
                     local: bool, reducers: int | None = None, split_size: int = 64 << 20,
                     options: dict[str, str] | None = None, job_class: str | None = None,
                     chunk_size: int = DEFAULT_CHUNK_SIZE, local_intermediate: str = "",
                     skip_bad_records: bool = False, source: str | None = None,
                     process_group: str = "", compress_output: str | None = None) -> JobPlan:
    """The plan of a job file (or of ``source``, the text of one named ``job_file``) over ``inputs``;
    ``process_group``: jobs of one program that may share task processes (a dataflow run's stages);
    ``compress_output``: the part files' codec, instead of the job's ``OUTPUT_COMPRESSION``."""
    if source is None:
        source = job_file.read_text()
    job = load_job_class(source, str(job_file), job_class)(options or {})
    check_formats(job)
    compression = compress_output or job.OUTPUT_COMPRESSION
    check_compression(compression, job.OUTPUT_FORMAT)
    steps = job.steps()
    if reducers is not None and reducers < 0:
        raise BadRequestError(f"the number of reducers must be 0 or more (0: map only), not {reducers}")
    plans = []
    for s in steps:
        count = (s.num_reducers if s.num_reducers is not None
                 else reducers if reducers is not None else (job.NUM_REDUCERS or 1))
        plans.append(StepPlan(map_only=s.map_only or count == 0, reducers=0 if s.map_only else count))
    if local:
        sized = [(str(p.resolve()), p.stat().st_size) for p in expand_inputs([Path(i) for i in inputs])]
        check_output(Path(output))
        output = str(Path(output).resolve())
    else:
        sized = await store_inputs(fs, inputs)
    state = None
    if job.wants_sample():
        state = job.partition_sample(await _sample(job, fs, sized, local, split_size), plans[0].reducers or 1)
    # a path of this submission's own: a refused one (the name is taken) cannot touch another job's source
    stored = f"/_jobs/{name}/{secrets.token_hex(6)}/{job_file.name}"
    plan = JobPlan(source=stored, source_name=str(job_file), inputs=tuple(sized), output=output, steps=tuple(plans),
                   input_format=job.INPUT_FORMAT, local_inputs=local, local_output=local,
                   split_size=split_size, options=tuple(sorted((options or {}).items())),
                   partition_state=b"" if state is None else pack_any(state),
                   job_class=job_class, chunk_size=chunk_size, local_intermediate=local_intermediate,
                   skip_bad_records=skip_bad_records or job.SKIP_BAD_RECORDS,
                   whole_inputs=tuple(path for path, _ in sized if job.whole_input(path)),
                   process_group=process_group, output_compression=compression or "",
                   combine_inputs=job.COMBINE_INPUTS)
    check_plan(plan)
    return plan


async def stage_input(fs: FileSystem, name: str, item: str) -> str:
    """The store path a job reads ``item`` from: a ``store:`` path as it is, a local file or directory
    uploaded under ``/_inputs/NAME/`` first (removed by :func:`fetch_output`)."""
    if item.startswith(STORE):
        return item[len(STORE):]
    local = Path(item)
    if not local.exists() and is_pattern(item):  # the files it matches, under one directory
        remote = f"/_inputs/{name}/{secrets.token_hex(3)}-matched"
        for number, path in enumerate(expand_inputs([local])):
            await fs.put_file(path, f"{remote}/{number:05d}-{path.name}")
        return remote
    if not local.exists():
        raise BadRequestError(f"input {item} does not exist")
    remote = f"/_inputs/{name}/{secrets.token_hex(3)}-{local.name}"  # two inputs may share a name
    if local.is_dir():
        await fs.put_tree(local, remote)
    else:
        await fs.put_file(local, remote)
    return remote


def remote_output(name: str, output: str) -> str:
    """Where on the store a job writes ``output``: a ``store:`` path, or a staging directory fetched after."""
    return output[len(STORE):] if output.startswith(STORE) else f"/_outputs/{name}"


async def fetch_output(fs: FileSystem, name: str, status: m.JobStatusView, output: str) -> None:
    """After a job on the store: a local ``output`` is downloaded (when the job succeeded), and what was
    staged for the job (uploaded inputs, the output's staging directory) is removed."""
    if status.state == "succeeded" and not output.startswith(STORE):
        Path(output).mkdir(parents=True, exist_ok=True)
        async for path, _ in fs.walk_manifests(remote_output(name, output)):
            await fs.get_file(path, Path(output) / path.rsplit("/", 1)[1])
    staged = [f"/_inputs/{name}"] + ([] if output.startswith(STORE) else [f"/_outputs/{name}"])
    for path in staged:
        with contextlib.suppress(NotFoundError):
            await fs.rm(path, recursive=True)


class JobClient:
    """Talks to the coordinator of a cluster."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.fs = FileSystem(client)

    async def coordinator(self) -> tuple[str, int]:
        view = await self.client.cluster()
        if view.coordinator is None:
            raise ClusterNotFoundError("this cluster has no MapReduce coordinator (start one with "
                                       "'dynamr coordinator start', or use 'dynamr cluster up')")
        return view.coordinator

    async def _ask(self, msg: m.Message, waits: float = 0.0) -> m.JobStatusView:
        """Send ``msg`` to the coordinator; ``waits``: seconds it may hold the answer on purpose."""
        timeout = self.client.timeout + waits if waits else None
        reply = await self.client.call_node(await self.coordinator(), msg, timeout)
        if not isinstance(reply, m.JobStatusReply):
            raise ProtocolError(f"the coordinator answered {type(msg).__name__} with {type(reply).__name__}")
        return reply.status

    async def check_name(self, name: str) -> None:
        """Raise :class:`BadRequestError` if the coordinator would refuse a job of this name (before anything
        is uploaded for it)."""
        await self._ask(m.SubmitJob(name=name, run=False, check_only=True))

    async def submit(self, name: str, plan: JobPlan, source: bytes, run: bool = True) -> m.JobStatusView:
        """Create (and run) a job: the name is checked, the job's source stored at ``plan.source`` (a path of
        this submission's own), then the plan submitted; a refused submission's source is removed again."""
        await self.check_name(name)
        await self.fs.put_bytes(source, plan.source)
        try:
            return await self._ask(m.SubmitJob(name=name, plan=plan, run=run))
        except BadRequestError:
            with contextlib.suppress(DynamrError):
                await self.fs.rm(plan.source.rsplit("/", 1)[0], recursive=True)
            raise

    async def run(self, name: str) -> m.JobStatusView:
        return await self._ask(m.RunJob(name=name))

    async def kill(self, name: str) -> m.JobStatusView:
        return await self._ask(m.KillJob(name=name))

    async def status(self, name: str) -> m.JobStatusView:
        return await self._ask(m.JobStatus(name=name))

    async def delete(self, name: str, wait: float = 120.0,
                     on_busy: Callable[[str], None] | None = None) -> tuple[str, ...]:
        """Forget a job that is not running; returns the store paths removed with it. A job that has ended
        but is still being cleaned up (writes of its attempts may still land) is deleted once it has been,
        waiting up to ``wait`` seconds (``on_busy`` is told why, once)."""
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                reply = await self.client.call_node(await self.coordinator(), m.DeleteJob(name=name))
                break
            except BusyError as exc:
                if time.monotonic() >= deadline:
                    raise
                if on_busy is not None and not told:
                    on_busy(str(exc))
                    told = True
                await asyncio.sleep(0.5)
        if not isinstance(reply, m.DeleteJobReply):
            raise ProtocolError(f"the coordinator answered DeleteJob with {type(reply).__name__}")
        return reply.removed

    async def logs(self, name: str, task: str = "") -> m.TaskLogsReply:
        """The logs of a job's attempts that failed or printed something (of one task, if given)."""
        reply = await self.client.call_node(await self.coordinator(), m.TaskLogs(name=name, task=task))
        if not isinstance(reply, m.TaskLogsReply):
            raise ProtocolError(f"the coordinator answered TaskLogs with {type(reply).__name__}")
        return reply

    async def web_address(self) -> tuple[str, int]:
        """Where the coordinator serves its dashboard (port 0: it serves none), and the host by which this
        client reached it (for a coordinator that listens on every interface)."""
        coordinator = await self.coordinator()
        reply = await self.client.call_node(coordinator, m.WebAddress())
        if not isinstance(reply, m.WebAddressReply):
            raise ProtocolError(f"the coordinator answered WebAddress with {type(reply).__name__}")
        host = reply.host if reply.host.strip("[]") not in WILDCARD_HOSTS else coordinator[0]
        return host, reply.port

    async def jobs(self) -> tuple[m.JobSummary, ...]:
        reply = await self.client.call_node(await self.coordinator(), m.ListJobs())
        if not isinstance(reply, m.ListJobsReply):
            raise ProtocolError(f"the coordinator answered ListJobs with {type(reply).__name__}")
        return reply.jobs

    async def wait(self, name: str, on_status: Callable[[m.JobStatusView], None] | None = None,
                   interval: float = 0.2, unreachable_for: float = 60.0) -> m.JobStatusView:
        """Follow a job until it ends. The coordinator holds each status request until the job ends (or
        ``interval`` seconds pass, when ``on_status`` shows progress; else up to :data:`FOLLOW_WAIT`), so the
        end is known at once. A coordinator that cannot be reached (restarting) is asked again for up to
        ``unreachable_for`` seconds before giving up."""
        unreachable_since: float | None = None
        wait = interval if on_status is not None else FOLLOW_WAIT
        while True:
            try:
                status = await self._ask(m.JobStatus(name=name, wait=wait), wait)
            except (UnavailableError, DeadlineExceededError):
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since > unreachable_for:
                    raise
                await asyncio.sleep(interval)
                continue
            unreachable_since = None
            if on_status is not None:
                on_status(status)
            if status.state in ENDED:
                return status
