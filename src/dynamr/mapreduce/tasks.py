"""What one map or reduce task does, independent of where it runs (inline, or in a worker's child).

:func:`run_map` feeds a split's records (or several small files', :class:`Pieces`) through the step's
mapper (with its init and final hooks) into a :class:`~dynamr.mapreduce.shuffle.MapOutputCollector`, which
hands each partition's sorted run to a sink.
:func:`run_reduce` merges the runs of one partition from every map, groups them and calls the reducer;
:func:`reduce_batches` gives the same a batch at a time, a pass-through reducer's merged text as
:class:`Lines`. :func:`format_output` renders final records as lines of a part file.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dynamr.mapreduce import folds
from dynamr.mapreduce.api import MRJob, MRStep, Record, _hook_records
from dynamr.mapreduce.runs import (
    Lines,
    encode_rounds,
    encode_run,
    line_records,
    merge_encoded_runs,
    merge_rounds,
    output_text,
)
from dynamr.mapreduce.shuffle import MapOutputCollector, folded_records, group

Sink = Callable[[int, Iterator[bytes]], None]


F = TypeVar("F", bound=Callable[..., Any])


def checked(fn: F, role: str) -> F:
    """``fn`` itself when it is a generator function (the usual case: no cost per call); otherwise ``fn``
    wrapped so that returning instead of yielding is a clear error naming the method and what to do."""
    if inspect.isgeneratorfunction(fn):
        return fn
    name = getattr(fn, "__name__", role)

    def call(*args: Any) -> Any:
        out = fn(*args)
        if out is None:
            raise TypeError(f"the {role} {name}() returned None: it must yield (key, value) pairs "
                            "(write 'yield key, value')")
        if type(out) is tuple and len(out) == 2 and not all(
                type(x) in (tuple, list) and len(x) == 2 for x in out):
            raise TypeError(f"the {role} {name}() returned one pair {out!r} instead of yielding it "
                            "(write 'yield key, value')")
        try:
            return iter(out)
        except TypeError:
            raise TypeError(f"the {role} {name}() returned a {type(out).__name__}, not (key, value) pairs "
                            "(write 'yield key, value')") from None

    return call  # type: ignore[return-value]


class Pieces:
    """The input of a map that reads several files in turn: (begin, records) for each. ``begin`` runs before
    the file's ``mapper_init`` (it sets the job's ``input_path``), so the mapper's hooks run once per file,
    as if each file were its own task; the map's output, combiner and counters are shared."""

    def __init__(self, pieces: Iterable[tuple[Callable[[], None], Iterable[Record]]]) -> None:
        self.pieces = pieces


def _map_stream(step: MRStep, records: Iterable[Record] | Pieces) -> Iterator[Record]:
    """Everything the step's mapper yields, hooks included; the per-record loop runs in C (itertools)."""
    if isinstance(records, Pieces):
        return itertools.chain.from_iterable(_each_piece(step, records))
    parts: list[Iterable[Record]] = []
    if step.mapper_init is not None:
        parts.append(_LazyHook(step.mapper_init))
    mapper = step.mapper
    stream = step.mapper_stream
    if stream is not None:
        given = records
        parts.append(_LazyHook(lambda: stream(iter(given))))
        mapper, records = None, ()
    elif mapper is not None and not inspect.isgeneratorfunction(mapper):
        # a mapper that returns its records: its first call is checked (returning None instead of yielding
        # is then a clear error), the others run at full speed
        records = iter(records)
        first = next(records, None)
        if first is not None:
            parts.append(_LazyHook(lambda: checked(mapper, "mapper")(*first)))
    parts.append(records if mapper is None else itertools.chain.from_iterable(itertools.starmap(mapper, records)))
    if step.mapper_final is not None:
        parts.append(_LazyHook(step.mapper_final))
    return itertools.chain.from_iterable(parts)


def _each_piece(step: MRStep, pieces: Pieces) -> Iterator[Iterator[Record]]:
    for begin, records in pieces.pieces:
        begin()
        yield _map_stream(step, records)


class _LazyHook:
    """Calls an init/final hook only when iteration reaches it (so init runs first, final after the input)."""

    def __init__(self, hook: Callable[[], Iterable[Record] | None]) -> None:
        self.hook = hook

    def __iter__(self) -> Iterator[Record]:
        return _hook_records(self.hook())


def input_reader(job: MRJob, step: MRStep, keys_needed: bool = False) -> Callable[..., Iterator[Record]]:
    """The reader a map task of ``step`` reads its split with: the job's own, without computing text
    offsets when the step's mapper never reads its key (:func:`folds.ignores_key`) and nothing else needs
    them (``keys_needed``: skip mode names bad records by key)."""
    if (keys_needed or step.mapper_stream is not None or not folds.ignores_key(step.mapper)
            or type(job).input_reader is not MRJob.input_reader):  # (a job's own reader is called as it is)
        return job.input_reader()
    return job.input_reader(keys=False)


#: the group of dynamr's built-in counters (records and bytes in and out of each phase, spills, combining)
BUILTIN = "dynamr"


def run_map(job: MRJob, step: MRStep, records: Iterable[Record] | Pieces, num_partitions: int, spill_dir: Path,
            sink: Sink, buffer_records: int = 1_000_000) -> int:
    """Run one map task; each partition's sorted output goes to ``sink``.

    A map-only step writes the mapper's output as it comes (no sort) to partition 0. Returns the number of
    records the mapper produced.
    """
    try:
        return _run_map(job, step, records, num_partitions, spill_dir, sink, buffer_records)
    except TypeError as exc:
        if "not iterable" in str(exc) and _raised_by_dynamr(exc):  # C code iterating what a mapper returned
            raise TypeError(f"a mapper returned something that is not (key, value) pairs ({exc}): write "
                            "'yield key, value'") from exc
        raise


_PACKAGE = str(Path(__file__).resolve().parents[1])


def _raised_by_dynamr(exc: BaseException) -> bool:
    """The innermost frame of the exception is dynamr's own, not user code."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(_PACKAGE)


def _run_map(job: MRJob, step: MRStep, records: Iterable[Record] | Pieces, num_partitions: int, spill_dir: Path,
             sink: Sink, buffer_records: int) -> int:
    if step.map_only:
        counted = _Counted(_map_stream(step, records))
        sink(0, encode_run(counted))
        job.increment_counter(BUILTIN, "map output records", counted.count)
        return counted.count
    partitions = max(1, num_partitions)
    partitioner = job.effective_partitioner() if partitions > 1 else _single_partition
    fold = step.combine or folds.detect(step.combiner)
    if fold is not None and fold not in folds.FOLDS:
        raise ValueError(f"MRStep(combine={fold!r}): combine must be one of {', '.join(folds.FOLDS)}")
    combiner = None if step.combiner is None else checked(step.combiner, "combiner")
    # with a fold, the reduce side folds each key's values in a dict (see reduce_fold): runs need no sort
    collector = MapOutputCollector(partitions, partitioner, combiner, spill_dir, buffer_records, fold=fold,
                                   text_runs=True, sort_runs=fold is None)
    if step.combiner_init is not None:
        collector.collect(_hook_records(step.combiner_init()))
    before = collector.records_in
    collector.collect(_map_stream(step, records))
    produced = collector.records_in - before
    if step.combiner_final is not None:
        collector.collect(_hook_records(step.combiner_final()))
    collector.finish(sink)
    count = job.increment_counter
    count(BUILTIN, "map output records", produced)
    if collector.spills:
        count(BUILTIN, "spills", collector.spills)
    if collector.combiner is not None:
        count(BUILTIN, "combine input records", collector.records_in)
        if collector.records_out >= 0:
            count(BUILTIN, "combine output records", collector.records_out)
    return produced


def _single_partition(key: Any, n: int) -> int:
    return 0


class _Counted:
    """Counts the records an iterator yields, at the cost of one attribute increment each."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._records = records
        self.count = 0

    def __iter__(self) -> Iterator[Record]:
        for record in self._records:
            self.count += 1
            yield record


#: a batch of a task's output: records, or text lines (a pass-through reducer's merged round)
OutputBatch = Sequence[Record] | Lines


def _passes_through(step: MRStep) -> bool:
    """The step's reduce yields its input records as they are (no hooks, an identity reducer)."""
    return (step.reducer is not None and step.reducer_stream is None and step.reducer_init is None
            and step.reducer_final is None and folds.is_identity(step.reducer))


def reduce_fold(step: MRStep) -> str | None:
    """The fold the reduce side applies to each key's values before its reducer sees them: the step's fold
    combiner (declared, or recognised by :func:`folds.detect`). A combiner may be applied to any grouping of
    a key's values, any number of times (Hadoop applies it in reduce-side merges too), so the reducer gets
    the one combined value of each key, in key order as ever. The map side then need not sort its runs,
    nor the reduce side merge them: a dict of running values, its keys sorted at the end
    (:func:`~dynamr.mapreduce.shuffle.folded_records`)."""
    fold = step.combine or folds.detect(step.combiner)
    return fold if fold in folds.FOLDS else None


def reduce_batches(step: MRStep, runs: Iterable[Iterable[bytes]], spill_dir: Path,
                   buffer_records: int = 1_000_000) -> Iterator[OutputBatch]:
    """:func:`run_reduce`'s output a batch at a time; a pass-through reducer's merged text rounds come as
    :class:`Lines`, with no record made of them."""
    if not _passes_through(step) or reduce_fold(step) is not None:
        return batches(run_reduce(step, runs, spill_dir, buffer_records))
    return (Lines(items) if is_text else items for is_text, items in merge_rounds(runs))


def run_reduce(step: MRStep, runs: Iterable[Iterable[bytes]], spill_dir: Path,
               buffer_records: int = 1_000_000) -> Iterator[Record]:
    """Merge one partition's runs from every map (or fold them, see :func:`reduce_fold`) and reduce them;
    ``spill_dir`` is where a fold too large for memory spills."""
    fold = reduce_fold(step)
    if fold is None:
        merged: Iterator[Record] = merge_encoded_runs(runs)
    else:
        merged = folded_records(runs, fold, spill_dir, buffer_records)
    if step.reducer_init is not None:
        yield from _hook_records(step.reducer_init())
    if step.reducer_stream is not None:
        yield from step.reducer_stream(group(merged))
    elif step.reducer is None:
        raise ValueError("a reduce task of a step without a reducer")
    elif folds.is_identity(step.reducer):
        yield from merged
    else:
        reducer = checked(step.reducer, "reducer")
        yield from itertools.chain.from_iterable(itertools.starmap(reducer, group(merged)))
    if step.reducer_final is not None:
        yield from _hook_records(step.reducer_final())


def batches(records: Iterable[Record], size: int = 4096) -> Iterator[list[Record]]:
    """Records in lists of ``size`` (the last may be shorter), taken at C speed."""
    it = iter(records)
    return iter(lambda: list(itertools.islice(it, size)), [])


def format_output(records: Iterable[Record], fmt: str) -> Iterator[bytes]:
    """Part-file lines: ``json(key) TAB json(value)`` (mrjob's default) or ``key TAB value`` as text."""
    return format_batches(batches(records), fmt)


def encode_batches(stream: Iterable[OutputBatch]) -> Iterator[bytes]:
    """Batches (some may be :class:`Lines`) as a run another step reads."""
    return encode_rounds((isinstance(batch, Lines), batch) for batch in stream)


def format_batches(stream: Iterable[OutputBatch], fmt: str) -> Iterator[bytes]:
    """:func:`format_output` over batches of records (some may be :class:`Lines`).

    Text lines of a batch whose keys and values are all strings are joined in C; any other batch goes
    record by record (``None`` keys write the value alone; bytes are written as they are)."""
    if fmt == "records":
        yield from encode_batches(stream)
        return
    if fmt == "json":
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
        for batch in stream:
            lines = []
            for record in line_records(batch) if isinstance(batch, Lines) else batch:
                key, value = record
                try:
                    lines.append(f"{dumps(key)}\t{dumps(value)}\n")
                except TypeError as exc:
                    raise TypeError(f"output record {record!r} is not JSON serializable ({exc}); "
                                    "yield JSON types or set OUTPUT_FORMAT = 'text'") from exc
            yield "".join(lines).encode()
        return
    for batch in stream:
        if isinstance(batch, Lines):
            yield output_text(batch).encode()
            continue
        try:
            text = "\n".join(map(_TAB_JOIN, batch))
        except TypeError:  # not all strings (or not pairs): line by line
            yield _text_lines(batch)
        else:
            yield (text + "\n").encode()


_TAB_JOIN = "\t".join


def _text_lines(batch: Sequence[Record]) -> bytes:
    out = bytearray()
    for key, value in batch:
        if type(key) is bytes or type(value) is bytes:
            out += _raw_line(key, value)
        else:
            out += (f"{value}\n" if key is None else f"{key}\t{value}\n").encode()
    return bytes(out)


def _raw_line(key: Any, value: Any) -> bytes:
    def raw(item: Any) -> bytes:
        return item if type(item) is bytes else str(item).encode()

    return raw(value) + b"\n" if key is None else raw(key) + b"\t" + raw(value) + b"\n"
