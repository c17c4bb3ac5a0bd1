"""The user API: a job is a class with generator methods, in the style of mrjob.

    from dynamr.mapreduce import MRJob

    class WordCount(MRJob):
        def mapper(self, key, line):
            for word in line.split():
                yield word.lower(), 1

        def combiner(self, word, counts):
            yield word, sum(counts)

        def reducer(self, word, counts):
            yield word, sum(counts)

A job overrides any of ``mapper``, ``combiner``, ``reducer`` (plus ``*_init`` and ``*_final`` hooks, which
may yield records too), or ``steps()`` for several steps. ``INPUT_FORMAT`` is "text" (key = byte offset of
the line, value = the line decoded with ``INPUT_ENCODING``), "bytes" (the line as bytes), "json" (value =
the decoded JSON line), "whole_file" (key = path, value = bytes) or "records" (the (key, value) records a
job wrote with ``OUTPUT_FORMAT = "records"``). ``OUTPUT_FORMAT`` is "json" (``json(key) TAB json(value)``,
as mrjob writes), "text" (``key TAB value``; bytes written as they are) or "records" (msgpack batches:
the records as they are, for another job to read).
Counters: ``self.increment_counter(group, name, amount)``.

Seed 000's form also runs: a source file with a subclass of :class:`Mapper` (``map(key, value)``) and one
of :class:`Reducer` (``reduce(key, values)``); :func:`job_from_seed_classes` wraps them into a job.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from dynamr.errors import BadRequestError
from dynamr.mapreduce.compressed import CODECS
from dynamr.mapreduce.folds import FOLDS
from dynamr.mapreduce.partition import RangePartitioner, hash_partition
from dynamr.mapreduce.splits import INPUT_FORMATS, REPLACED, WHOLE_FILE_FORMATS, reader_for

Record = tuple[Any, Any]
OUTPUT_FORMATS = ("json", "text", "records")


@dataclass(frozen=True)
class MRStep:
    """One map (and optionally combine and reduce) pass. Any callable left as None is skipped."""

    mapper: Callable[[Any, Any], Iterable[Record]] | None = None
    combiner: Callable[[Any, Iterable[Any]], Iterable[Record]] | None = None
    reducer: Callable[[Any, Iterable[Any]], Iterable[Record]] | None = None
    mapper_init: Callable[[], Iterable[Record] | None] | None = None
    mapper_final: Callable[[], Iterable[Record] | None] | None = None
    combiner_init: Callable[[], Iterable[Record] | None] | None = None
    combiner_final: Callable[[], Iterable[Record] | None] | None = None
    reducer_init: Callable[[], Iterable[Record] | None] | None = None
    reducer_final: Callable[[], Iterable[Record] | None] | None = None
    #: reducers for this step; None: the job's or the command line's
    num_reducers: int | None = None
    #: "sum", "min", "max" or "add": the combiner is that fold, applied on the map side as a running value per key
    #: (found by itself for a combiner that is exactly ``yield key, sum(values)``; see dynamr.mapreduce.folds)
    combine: str | None = None
    #: instead of ``mapper``: called once per map task with the iterator of its input records, returns an
    #: iterator of (key, value) records (Spark's mapPartitions; how dataflow stages run fused chains)
    mapper_stream: Callable[[Iterator[Record]], Iterable[Record]] | None = None
    #: instead of ``reducer``: called once per reduce task with the iterator of (key, values) groups,
    #: returns an iterator of records
    reducer_stream: Callable[[Iterator[tuple[Any, Iterator[Any]]]], Iterable[Record]] | None = None

    @property
    def map_only(self) -> bool:
        return self.reducer is None and self.reducer_stream is None


class MRJob:
    INPUT_FORMAT: ClassVar[str] = "text"
    #: how "text" input is decoded; bytes not valid in it become U+FFFD and are counted under
    #: ("dynamr", "undecodable input bytes replaced"). Binary records: INPUT_FORMAT = "bytes".
    INPUT_ENCODING: ClassVar[str] = "utf-8"
    OUTPUT_FORMAT: ClassVar[str] = "json"
    #: "gzip", "bzip2" or "xz": part files written compressed (``part-00000.gz``); None: as they are
    OUTPUT_COMPRESSION: ClassVar[str | None] = None
    #: default number of reducers (the command line may override it)
    NUM_REDUCERS: ClassVar[int | None] = None
    #: "hash" (stable hash of the key), or "range": each reducer gets a contiguous key range, cut at the
    #: quantiles of a sample of map output keys taken before the job runs, so the outputs read in order
    #: are totally ordered (TeraSort). A ``partitioner`` method of your own overrides both.
    PARTITIONER: ClassVar[str] = "hash"
    #: "sum", "min", "max" or "add": the one-step job's combining is that fold (with or without a combiner method)
    COMBINE: ClassVar[str | None] = None
    #: skip mode (off by default; also ``--skip-bad-records``): a map task that fails is retried while
    #: tracking its records; the record it fails on is then skipped by later attempts and counted under
    #: ("dynamr", "skipped records"), instead of failing the job
    SKIP_BAD_RECORDS: ClassVar[bool] = False
    #: small input files share map tasks (each file still gets its own mapper_init and mapper_final, with
    #: ``input_path`` set to it); False: one map task per file at least
    COMBINE_INPUTS: ClassVar[bool] = True

    def __init__(self, options: dict[str, str] | None = None) -> None:
        self._counters: dict[tuple[str, str], int] = {}
        #: bumped by :meth:`report_progress` and by counters (the task's progress watchdog reads it)
        self.progress_ticks = 0
        #: options given on the command line (``-D key=value``) or to the runner
        self.options: dict[str, str] = dict(options or {})
        #: path of the input file being mapped (first step only; set before each file's mapper_init)
        self.input_path: str = ""
        #: where in ``input_path`` the split being mapped starts (a byte offset; 0 for a whole file)
        self.input_start: int = 0
        #: what :meth:`partition_sample` returned, given to every task of the job
        self.partition_state: Any = None

    # --- what users override -------------------------------------------------------------------------

    def mapper(self, key: Any, value: Any) -> Iterable[Record]:
        yield key, value

    def combiner(self, key: Any, values: Iterable[Any]) -> Iterable[Record]:
        for value in values:
            yield key, value

    def reducer(self, key: Any, values: Iterable[Any]) -> Iterable[Record]:
        for value in values:
            yield key, value

    def partitioner(self, key: Any, num_partitions: int) -> int:
        """Which reducer gets ``key``; the default is a stable hash (the same in every process)."""
        return hash_partition(key, num_partitions)

    def partition_sample(self, keys: list[Any], num_partitions: int) -> Any:
        """Sees a sample of the first step's map output keys before the job runs. What it returns becomes
        ``self.partition_state`` in every task. With ``PARTITIONER = "range"`` the default returns the
        sample's quantiles, the boundaries of the reducers' key ranges."""
        if self.PARTITIONER == "range":
            return RangePartitioner.from_sample(keys, num_partitions).boundaries
        return None

    @classmethod
    def wants_sample(cls) -> bool:
        return cls.PARTITIONER == "range" or cls.partition_sample is not MRJob.partition_sample

    def effective_partitioner(self) -> Callable[[Any, int], int]:
        """What the map side partitions with: the job's own method, or the range/hash policy."""
        if type(self).partitioner is not MRJob.partitioner:
            return self.partitioner
        if self.PARTITIONER == "range":
            return RangePartitioner(self.partition_state or [])
        return hash_partition  # not the method: no bound call per key

    def steps(self) -> list[MRStep]:
        """The job's steps; by default one step made of the methods this class overrides."""
        cls = type(self)

        def own(name: str) -> Any:
            defined = getattr(cls, name, None)
            return getattr(self, name) if defined is not None and defined is not getattr(MRJob, name, None) else None

        names = ("mapper", "combiner", "reducer", "mapper_init", "mapper_final", "combiner_init",
                 "combiner_final", "reducer_init", "reducer_final")
        found = {name: own(name) for name in names}
        if found["mapper"] is None and found["reducer"] is None:
            raise BadRequestError(f"{cls.__name__} defines neither mapper nor reducer nor steps()")
        return [MRStep(**found, combine=cls.COMBINE)]

    # --- services for user code ----------------------------------------------------------------------

    def increment_counter(self, group: str, name: str, amount: int = 1) -> None:
        key = (group, name)
        self._counters[key] = self._counters.get(key, 0) + amount
        self.progress_ticks += 1

    def report_progress(self) -> None:
        """Tell the cluster this task is alive. A task that reads no input, emits nothing and touches no
        counter for ``task_timeout`` seconds is killed and retried; call this from long work on one record."""
        self.progress_ticks += 1

    def counters(self) -> dict[tuple[str, str], int]:
        return dict(self._counters)

    def whole_input(self, path: str) -> bool:
        """Whether the input file ``path`` is read as one split (not cut into byte ranges)."""
        return self.INPUT_FORMAT in WHOLE_FILE_FORMATS

    def input_reader(self, keys: bool = True) -> Callable[..., Iterator[Record]]:
        """The reader of this job's input format (see :mod:`dynamr.mapreduce.splits`), counting bytes of text
        input that are not valid in ``INPUT_ENCODING``, and lines of text (``map input records``). Without
        ``keys``, lines of text come with None for their byte offsets (a mapper that never reads them)."""
        return reader_for(self.INPUT_FORMAT, self.INPUT_ENCODING,
                          lambda count: self.increment_counter(*REPLACED, count),
                          lambda count: self.increment_counter("dynamr", "map input records", count), keys)

    def reset_counters(self) -> dict[tuple[str, str], int]:
        out, self._counters = self._counters, {}
        return out


def _hook_records(result: Iterable[Record] | None) -> Iterator[Record]:
    """``*_init``/``*_final`` hooks may return None or yield records."""
    if result is None:
        return iter(())
    return iter(result)


def check_formats(job: MRJob) -> None:
    try:
        codecs.lookup(job.INPUT_ENCODING)
    except (LookupError, TypeError):
        raise BadRequestError(f"INPUT_ENCODING {job.INPUT_ENCODING!r} is not an encoding Python knows "
                              "(for example 'utf-8' or 'latin-1')") from None
    if job.INPUT_FORMAT not in INPUT_FORMATS:
        raise BadRequestError(f"INPUT_FORMAT must be one of {', '.join(INPUT_FORMATS)} (got {job.INPUT_FORMAT!r})")
    if job.COMBINE is not None and job.COMBINE not in FOLDS:
        raise BadRequestError(f"COMBINE must be one of {', '.join(FOLDS)} (got {job.COMBINE!r})")
    if job.OUTPUT_FORMAT not in OUTPUT_FORMATS:
        raise BadRequestError(f"OUTPUT_FORMAT must be one of {', '.join(OUTPUT_FORMATS)} "
                              f"(got {job.OUTPUT_FORMAT!r})")
    check_compression(job.OUTPUT_COMPRESSION, job.OUTPUT_FORMAT)


def check_compression(codec: str | None, output_format: str) -> None:
    """An output compression must be a known codec, of an output format of lines."""
    if codec is None:
        return
    if codec not in CODECS:
        raise BadRequestError(f"OUTPUT_COMPRESSION must be one of {', '.join(CODECS)} or None (got {codec!r})")
    if output_format == "records":
        raise BadRequestError("OUTPUT_COMPRESSION applies to json and text output, not OUTPUT_FORMAT = 'records' "
                              "(dynamr's own format for another job to read)")


# --- seed 000's form: Mapper and Reducer classes ------------------------------------------------------


class Mapper:
    """Seed 000 style: subclass and implement ``map(key, value)`` yielding (key, value) pairs."""

    def map(self, key: Any, value: Any) -> Iterable[Record]:
        raise NotImplementedError


class Reducer:
    """Seed 000 style: subclass and implement ``reduce(key, values)`` yielding (key, value) pairs."""

    def reduce(self, key: Any, values: Iterable[Any]) -> Iterable[Record]:
        raise NotImplementedError


def job_from_seed_classes(mapper_cls: type[Mapper], reducer_cls: type[Reducer] | None) -> type[MRJob]:
    """Wrap seed-style classes into an :class:`MRJob` class."""

    class SeedJob(MRJob):
        def __init__(self, options: dict[str, str] | None = None) -> None:
            super().__init__(options)
            self._mapper = mapper_cls()
            self._reducer = reducer_cls() if reducer_cls is not None else None

        def steps(self) -> list[MRStep]:
            reducer = self._reducer
            return [MRStep(mapper=self._mapper.map, reducer=reducer.reduce if reducer is not None else None)]

    SeedJob.__name__ = SeedJob.__qualname__ = f"{mapper_cls.__name__}+{getattr(reducer_cls, '__name__', '')}"
    return SeedJob
