"""One task attempt inside a task process: its input read, the user's code run, its output written.

:class:`TaskRun` is an attempt from its :class:`~dynamr.rpc.messages.TaskSpec`: a **map** reads its split
(a file on the store through :class:`StoreFile`, or a local file in place), runs
:func:`~dynamr.mapreduce.tasks.run_map`, writes each partition's sorted run to a local file and uploads it
under the attempt's own key; a **reduce** streams its partition from every committed map output, runs
:func:`~dynamr.mapreduce.tasks.run_reduce` and writes the part file (compressed when its name says so), or,
between steps, an object for the next step's maps. :class:`Progress` counts the bytes read for the
worker's progress lines; :class:`Session` keeps the store client and the loaded job classes from one
attempt to the next. The process around it (frames on stdin and stdout, exits) is
:mod:`dynamr.mapreduce.child`.
"""

from __future__ import annotations

import concurrent.futures
import json
import tempfile
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack

from dynamr.config import load_secret
from dynamr.errors import (
    DataLostError,
    DeadlineExceededError,
    InputLostError,
    NotFoundError,
    QuorumError,
    UnavailableError,
)
from dynamr.files.client import FileSystem
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.api import MRJob, MRStep
from dynamr.mapreduce.compressed import codec_of, compressed_blocks
from dynamr.mapreduce.loader import load_job_class
from dynamr.mapreduce.runs import decode_run
from dynamr.mapreduce.splits import LocalFile, RangeSource, Split
from dynamr.mapreduce.tasks import (
    BUILTIN,
    OutputBatch,
    Pieces,
    batches,
    encode_batches,
    format_batches,
    input_reader,
    reduce_batches,
    run_map,
)
from dynamr.rpc import messages as m
from dynamr.rpc import tls
from dynamr.rpc.messages import TaskOutput, TaskSpec
from dynamr.store.client import Client

PIECE = 1 << 20
#: small files a map of several fetches ahead of its mapper, at most, and bytes (about)
PREFETCH_FILES = 8
PREFETCH_BYTES = 16 << 20


class Progress:
    """How far the running attempt is: input bytes consumed (of ``total`` when known, else 0)."""

    def __init__(self, total: int = 0) -> None:
        self.done = 0
        self.total = total
        #: bumped while output is written (a task busy sorting, merging or uploading is not stuck)
        self.ticks = 0

    def tick(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        for block in blocks:
            self.ticks += 1
            yield block

    def count(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        for block in blocks:
            self.done += len(block)
            yield block


class CountingSource:
    """A :class:`~dynamr.mapreduce.splits.RangeSource` that adds what it reads to a :class:`Progress`."""

    def __init__(self, source: Any, progress: Progress) -> None:
        self.source, self.progress = source, progress

    def read(self, offset: int, length: int) -> Iterator[bytes]:
        return self.progress.count(self.source.read(offset, length))


class Session:
    """What a task process keeps from one attempt to the next: the store client and the loaded job classes."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._client_key: tuple[Any, ...] = ()
        self._classes: dict[tuple[str, str | None], type[MRJob]] = {}

    def client(self, spec: TaskSpec) -> Client:
        key = (spec.seeds, spec.secret_file, spec.timeout, spec.tls_ca)
        if self._client is None or key != self._client_key:
            self.close()
            secret = load_secret(secret_file=Path(spec.secret_file)) if spec.secret_file else load_secret()
            ssl_context = tls.client_context(Path(spec.tls_ca)) if spec.tls_ca else None
            self._client = Client(list(spec.seeds), secret, timeout=spec.timeout, ssl_context=ssl_context)
            self._client_key = key
        return self._client

    def job_class(self, spec: TaskSpec, client: Client, fs: FileSystem) -> type[MRJob]:
        key = (spec.source, spec.job_class)
        if key not in self._classes:
            source = client.run(fs.read_bytes(spec.source)).decode()
            self._classes[key] = load_job_class(source, spec.source_name or spec.source, spec.job_class)
        return self._classes[key]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class StoreFile:
    """A :class:`~dynamr.mapreduce.splits.RangeSource` over a file on the store."""

    def __init__(self, client: Client, fs: FileSystem, path: str) -> None:
        self.client, self.fs, self.path = client, fs, path

    def read(self, offset: int, length: int) -> Iterator[bytes]:
        end = offset + length
        while offset < end:
            want = min(PIECE * 4, end - offset)
            data: bytes = self.client.run(self.fs.read_bytes(self.path, offset, want))
            if not data:
                return
            offset += len(data)
            yield data


class Prefetch:
    """The files of a map of several small files on the store, fetched a few ahead of the mapper, in order.

    Reading a small file is a couple of round trips (its manifest, its chunk) for little work: in turn, a
    task of forty files would wait on the network between files. At most :data:`PREFETCH_FILES` files and
    about :data:`PREFETCH_BYTES` are fetched ahead; a fetch's error is raised where the file is read, as
    the store's own error (an outage stays an outage)."""

    def __init__(self, client: Client, fs: FileSystem, refs: Sequence[m.SplitRef]) -> None:
        self.client, self.fs, self.refs = client, fs, refs
        self.fetching: deque[concurrent.futures.Future[bytes]] = deque()
        self.started = 0  # refs whose fetch has started
        self.taken = 0  # refs handed out

    def next(self) -> RangeSource:
        """The next file's bytes (a source over them, as its split's offsets say)."""
        ref = self.refs[self.taken]
        self._fill()
        self.taken += 1
        future = self.fetching.popleft()
        self._fill()
        return _Fetched(future, ref.start)

    def _fill(self) -> None:
        ahead = sum(r.end - r.start for r in self.refs[self.taken:self.started])
        while self.started < len(self.refs) and (self.started == self.taken or (
                self.started - self.taken < PREFETCH_FILES and ahead < PREFETCH_BYTES)):
            ref = self.refs[self.started]
            self.fetching.append(self.client.start(self.fs.read_bytes(ref.path, ref.start, ref.end - ref.start)))
            ahead += ref.end - ref.start
            self.started += 1

    def close(self) -> None:
        for future in self.fetching:
            future.cancel()
        self.fetching.clear()


class _Fetched:
    """A :class:`~dynamr.mapreduce.splits.RangeSource` over bytes being fetched (from file offset ``start``)."""

    def __init__(self, future: concurrent.futures.Future[bytes], start: int) -> None:
        self.future, self.start = future, start

    def read(self, offset: int, length: int) -> Iterator[bytes]:
        data = self.future.result()[offset - self.start:offset - self.start + length]
        if data:
            yield data


#: errors that mean the store could not be reached or could not reach a quorum (retried, not counted)
STORE_OUTAGES = (QuorumError, UnavailableError, DeadlineExceededError)


def pull(client: Client, agen: AsyncIterator[bytes]) -> Iterator[bytes]:
    """Iterate an async generator that lives on the client's loop, from this thread."""
    async def step() -> bytes:
        return await agen.__anext__()

    while True:
        try:
            yield client.run(step())
        except StopAsyncIteration:
            return


def guarded(blocks: Iterator[bytes], task: str, attempt: str) -> Iterator[bytes]:
    """The bytes of task ``task``'s committed output; its loss (no replica left of a manifest or a chunk)
    is reported as :class:`InputLostError` naming the producer, so the coordinator can run it again."""
    try:
        yield from blocks
    except (NotFoundError, DataLostError) as exc:
        raise InputLostError(f"the committed output of task {task} (attempt {attempt}) cannot be read: {exc}; "
                             f"the coordinator runs that task again", task, attempt) from exc


def _read(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(PIECE):
            yield data


async def _file_pieces(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(PIECE * 4):
            yield data


class TaskRun:
    def __init__(self, spec: TaskSpec, session: Session) -> None:
        self.spec = spec
        self.session = session
        self.client = self.session.client(spec)
        self.fs = FileSystem(self.client.async_client, chunk_size=spec.chunk_size)
        self.job_name = spec.job
        self.attempt = spec.attempt
        self.scratch = Path(tempfile.mkdtemp(prefix="dynamr-task-", dir=spec.scratch_dir or None))
        self.progress = Progress()
        self.job: MRJob | None = None
        #: the length of the byte ranges a map reads, when it reads input files
        self.split_bytes: int | None = None
        #: the input split being read (of a map that reads input files)
        self.reading: m.SplitRef | None = None
        #: skip mode's record tracker
        self.tracker: RecordTracker | None = None
        #: a map of several small files on the store: the files fetched ahead of the mapper
        self.prefetch: Prefetch | None = None

    def load_job(self) -> MRJob:
        job = self.session.job_class(self.spec, self.client, self.fs)(dict(self.spec.options))
        if self.spec.partition_state:
            job.partition_state = msgpack.unpackb(self.spec.partition_state, raw=False)
        return job

    def run(self) -> tuple[int, ...]:
        """Run the attempt; returns the partitions a map wrote (nothing for a reduce)."""
        job = self.job = self.load_job()
        step = job.steps()[self.spec.step]
        if self.spec.kind == "map":
            return self.run_map(job, step)
        self.run_reduce(job, step)
        return ()

    def _input_records(self, job: MRJob, step: MRStep) -> Iterator[tuple[Any, Any]] | Pieces:
        source = self.spec.input
        if source is None:
            raise ValueError(f"map attempt {self.attempt} has no input")
        if source.kind == "split" and source.splits:
            reader = input_reader(job, step, keys_needed=self.spec.track_records)
            self.progress.total = self.split_bytes = sum(ref.end - ref.start for ref in source.splits)

            if not source.local and len(source.splits) > 1:
                self.prefetch = Prefetch(self.client, self.fs, source.splits)

            def piece(ref: m.SplitRef) -> tuple[Callable[[], None], Iterator[tuple[Any, Any]]]:
                split = Split(index=ref.index, path=ref.path, start=ref.start, end=ref.end, file_size=ref.file_size)
                where: RangeSource = LocalFile(Path(split.path)) if source.local else \
                    self.prefetch.next() if self.prefetch is not None else StoreFile(self.client, self.fs, split.path)

                def begin() -> None:
                    job.input_path, job.input_start, self.reading = split.path, split.start, ref

                records = reader(CountingSource(where, self.progress), split)
                if self.tracker is not None:
                    records = self.tracker.track(records, split.path if len(source.splits) > 1 else "")
                return begin, records

            if len(source.splits) == 1:
                begin, records = piece(source.splits[0])
                begin()
                return records
            return Pieces(map(piece, source.splits))
        # the output of the previous step: encoded records in a local file, or an object in the store
        if source.kind == "file":
            return decode_run(self.progress.count(_read(Path(source.path))))
        key = source.key.encode()
        producer = self.spec.producer
        blocks = guarded(pull(self.client, self.fs.read_object(key)),
                         producer.task_id if producer else source.key, producer.attempt if producer else "")
        return decode_run(self.progress.count(blocks))

    def _local_run(self, job_name: str, attempt: str, partition: int) -> Path:
        """Where a map attempt's partition lives when intermediate data stays on the local disk."""
        return Path(self.spec.local_intermediate) / job_name / attempt.replace("/", "_") / f"{partition}.run"

    def run_map(self, job: MRJob, step: MRStep) -> tuple[int, ...]:
        partitions: dict[int, Path] = {}
        local = bool(self.spec.local_intermediate) and self.spec.output is None

        written = 0

        def sink(partition: int, blocks: Iterator[bytes]) -> None:
            nonlocal written
            if local:
                path = self._local_run(self.job_name, self.attempt, partition)
                path.parent.mkdir(parents=True, exist_ok=True)
            else:
                path = self.scratch / f"part-{partition}.run"
            size = 0
            with open(path, "wb") as out:
                for block in self.progress.tick(blocks):
                    out.write(block)
                    size += len(block)
            written += size
            if size:
                partitions[partition] = path
            else:
                path.unlink(missing_ok=True)

        tracker = None
        if self.spec.track_records:  # skip mode: know which record failed, skip known bad ones
            tracker = self.tracker = RecordTracker(list(self.spec.skip_records))
        records = self._input_records(job, step)
        if tracker is not None and not isinstance(records, Pieces) and self.split_bytes is None:
            records = tracker.track(records)  # the output of an earlier step (input splits track themselves)
        try:
            run_map(job, step, records, self.spec.num_partitions, self.scratch / "spill", sink,
                    self.spec.buffer_records)
        except Exception as exc:
            if tracker is not None and tracker.current is not None:
                exc.dynamr_bad_record = tracker.current  # type: ignore[attr-defined]
            raise
        if tracker is not None and tracker.skipped:
            job.increment_counter(BUILTIN, "skipped records", tracker.skipped)
        # what was read, but no more than the split's bytes (its reader may fetch a little past its end for the
        # last line); less when the mapper stopped early (a dataflow take)
        job.increment_counter(BUILTIN, "map input bytes",
                              self.progress.done if self.split_bytes is None else
                              min(self.progress.done, self.split_bytes))
        if self.spec.output is None:
            job.increment_counter(BUILTIN, "shuffle bytes", written)
        if self.spec.output is not None:  # a map-only step: partition 0 is the task's final output
            run_file = partitions.get(0)
            records = decode_run(_read(run_file)) if run_file is not None else iter(())
            self._write_output(job, batches(records), self.spec.output)
            return ()
        if local:
            return tuple(sorted(partitions))
        self.client.run(im.store_partitions(self.fs, self.job_name, self.attempt,
                                            [(p, _file_pieces(path)) for p, path in sorted(partitions.items())]))
        return tuple(sorted(partitions))

    def run_reduce(self, job: MRJob, step: Any) -> int:
        """Run the reduce; returns how many records it wrote."""
        partition = self.spec.partition
        commits = [im.Commit(c.task_id, c.attempt, c.partitions) for c in self.spec.commits]
        map_job = self.spec.map_job
        if self.spec.local_intermediate:
            runs = [self.progress.count(_read(self._local_run(map_job, c.attempt, partition)))
                    for c in commits if partition in c.partitions]
        else:
            runs = [self.progress.count(guarded(pull(self.client, im.read_partition(self.fs, map_job, c, partition)),
                                                c.task_id, c.attempt))
                    for c in commits]
        if self.spec.output is None:
            raise ValueError(f"reduce attempt {self.attempt} has no output")
        count = self._write_output(job, reduce_batches(step, runs, self.scratch / "spill", self.spec.buffer_records),
                                   self.spec.output)
        job.increment_counter(BUILTIN, "reduce input bytes", self.progress.done)
        job.increment_counter(BUILTIN, "reduce output records", count)
        return count

    def _write_output(self, job: MRJob, stream: Iterator[OutputBatch], output: TaskOutput) -> int:
        """Write batches of records as the next step's input, or as a part file (local, or on the store as the
        attempt's object)."""
        local = self.scratch / "out"
        count = 0

        def counted(stream: Iterator[OutputBatch]) -> Iterator[OutputBatch]:
            nonlocal count
            for batch in stream:
                count += len(batch)
                yield batch

        blocks = (encode_batches(counted(stream)) if output.kind in ("object", "file")
                  else format_batches(counted(stream), job.OUTPUT_FORMAT))
        if output.kind in ("local", "store") and (codec := codec_of(output.path)) is not None:
            blocks = compressed_blocks(blocks, codec)  # (the plan named the part for its codec)
        with open(local, "wb") as out:
            for block in self.progress.tick(blocks):
                out.write(block)
            size = out.tell()
        job.increment_counter(BUILTIN, "step output bytes" if output.kind in ("object", "file") else "output bytes",
                              size)
        if output.kind in ("local", "file"):
            target = Path(output.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            local.replace(target)
        else:  # the attempt's own object: a step's output, or a part file the coordinator publishes at commit
            self.client.run(self.fs.put_object(output.key.encode(), _file_pieces(local)))
        return count

    def close(self) -> None:
        import shutil

        if self.prefetch is not None:
            self.prefetch.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def progress_line(self) -> list[int]:
        ticks = self.job.progress_ticks if self.job is not None else 0
        return [self.progress.done, self.progress.total, ticks + self.progress.ticks]


def user_traceback(exc: BaseException) -> str:
    """The traceback without dynamr's own frames: what the user needs is where *their* code failed."""
    package = str(Path(__file__).resolve().parent.parent)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(package)]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


class RecordTracker:
    """Skip mode: remembers the key of the record being mapped, and drops records named bad by earlier
    attempts (keys compared as JSON text, after the file's path in a map of several files, where keys such
    as line offsets repeat). Costs a Python step per record, so only retries use it."""

    def __init__(self, skip: list[str]) -> None:
        self.skip = set(skip)
        self.current: str | None = None
        self.skipped = 0

    def track(self, records: Iterator[tuple[Any, Any]], within: str = "") -> Iterator[tuple[Any, Any]]:
        prefix = f"{within}\n" if within else ""
        for record in records:
            key = prefix + json.dumps(record[0], sort_keys=True, default=str)
            if key in self.skip:
                self.skipped += 1
                continue
            self.current = key
            yield record
        self.current = None  # a failure after the input (mapper_final) is no record's fault
