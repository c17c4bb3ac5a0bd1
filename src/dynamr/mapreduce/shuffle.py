"""The shuffle: map output partitioned, combined, sorted, spilled and merged; reduce input merged and grouped.

Map side (seed 003's io.sort design): records go into an in-memory buffer of at most ``buffer_records``.
With a combiner, the buffer is a dict of key -> values, so repeated keys cost one list append. When it is
full, each key's values first pass through the combiner *in memory* (the combined records go back into
the buffer); only if that does not at least halve the buffer are records partitioned, sorted and written,
a sorted *run* per partition, to a local spill file. Once combining in memory has failed to halve the
buffer, later fills spill at once (the keys are too many for combining to pay). At the end the runs of
each partition are merged (k-way, streaming), combined once more, and handed to a sink as the task's
output for that partition. A combiner may thus see a key several times, its own output among the
values: it must be associative, as in Hadoop.

With ``text_runs``, string records are kept as ``key NUL value`` lines instead (each batch joined as it
arrives from the mapper, while its tuples are still in the CPU's cache), partitioned and sorted as
strings, and written as text batches; the first batch that cannot be lines turns the buffer back into
records. Runs are encoded, decoded and merged by :mod:`dynamr.mapreduce.runs`. Reduce side: runs from
every map are merged a batch at a time (memory: one batch per run) and grouped by key.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import operator
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from dynamr.mapreduce.folds import as_combiner
from dynamr.mapreduce.keys import total_order
from dynamr.mapreduce.partition import RangePartitioner, hash_partition, hash_partitions
from dynamr.mapreduce.runs import (
    Lines,
    Record,
    ShuffleError,
    as_lines,
    decode_run,
    encode_part,
    encode_rounds,
    encode_run,
    line_keys,
    line_order_holds,
    line_records,
    merge_encoded_runs,
    merge_rounds,
    sort_records,
    total_order_in_use,
)

Combiner = Callable[[Any, Iterable[Any]], Iterable[Record]]
Partitioner = Callable[[Any, int], int]

#: records taken from a mapper at a time by the collector
COLLECT_BATCH = 1024
_first = itemgetter(0)
_second = itemgetter(1)
_MISSING = object()


def group(records: Iterable[Record]) -> Iterator[tuple[Any, Iterator[Any]]]:
    """(key, values) for each run of equal keys in a sorted stream."""
    for key, pairs in itertools.groupby(records, key=_first):
        yield key, map(_second, pairs)


def combine_sorted(records: Iterable[Record], combiner: Combiner) -> Iterator[Record]:
    for key, values in group(records):
        yield from combiner(key, values)


@dataclass
class _Spill:
    path: Path
    #: partition -> (offset, length) of its run in the file
    index: dict[int, tuple[int, int]] = field(default_factory=dict)

    def read(self, partition: int, block: int = 1 << 20) -> Iterator[bytes]:
        where = self.index.get(partition)
        if where is None:
            return
        offset, length = where
        with open(self.path, "rb") as f:
            f.seek(offset)
            while length > 0:
                data = f.read(min(block, length))
                if not data:
                    return
                length -= len(data)
                yield data


class MapOutputCollector:
    """Partitions, combines, sorts and spills one map task's output; bounded by ``buffer_records``."""

    def __init__(self, num_partitions: int, partitioner: Partitioner, combiner: Combiner | None,
                 spill_dir: Path, buffer_records: int = 1_000_000, fold: str | None = None,
                 text_runs: bool = False, sort_runs: bool = True) -> None:
        self.num_partitions = num_partitions
        #: False: a task that spilled nothing gives its partitions unsorted (the reduce side folds them)
        self.sort_runs = sort_runs
        #: string records as sorted text lines (cheaper to sort, encode and merge than tuples)
        self.text_runs = text_runs
        self.partitioner = partitioner
        self.combiner = combiner
        self.spill_dir = spill_dir
        self.buffer_records = buffer_records
        self._groups: defaultdict[Any, list[Any]] = defaultdict(list)
        self._records: list[Record] = []
        self._buffered = 0
        self._spills: list[_Spill] = []
        self.records_in = 0
        self.spills = 0
        #: records in the final runs, when known without decoding them again (no spill); -1 otherwise
        self.records_out = -1
        #: whether combining a full buffer in memory shrinks it enough to skip a spill (until it did not)
        self._combine_pays = combiner is not None
        #: a fold (see dynamr.mapreduce.folds): key -> running value instead of key -> values
        self.fold = fold
        self._folded: dict[Any, Any] = {}
        if fold is not None:
            self.combiner = as_combiner(fold)  # merging spilled runs
            self._combine_pays = False
        #: with ``text_runs`` and nothing to combine, the buffer as lines, each batch joined while it is
        #: still in the CPU's cache (and no tuple kept); None once a batch could not be lines
        self._lines: Lines | None = None
        if text_runs and self.combiner is None and not total_order_in_use():
            self._lines = Lines()

    def collect(self, records: Iterable[Record]) -> None:
        """The map side's hot loop: take everything a mapper call yields (counted in ``records_in``).

        Records are taken in batches (``itertools.islice``), so counting and the buffer limit are checked
        once per batch, not once per record; the per-record work is one dict lookup and one append.
        """
        it = iter(records)
        step = max(1, min(COLLECT_BATCH, self.buffer_records))
        while True:
            batch = list(itertools.islice(it, step))
            if not batch:
                return
            if self.fold is not None:
                self._fold_in(batch)
            elif self.combiner is not None:
                groups = self._groups
                try:
                    for key, value in batch:
                        groups[key].append(value)
                except (TypeError, ValueError) as exc:
                    raise ShuffleError(f"map output must be (key, value) pairs with hashable keys to be "
                                       f"combined: {exc}") from exc
            else:
                _check_pairs(batch)
                if self._lines is not None and (lines := as_lines(batch)) is not None:
                    self._lines += lines
                else:
                    self._no_lines()
                    self._records.extend(batch)
            self._buffered = len(self._folded) if self.fold is not None else self._buffered + len(batch)
            self.records_in += len(batch)
            if self._buffered >= self.buffer_records:
                self._buffer_full()
            if len(batch) < step:
                return

    def _fold_in(self, batch: list[Record]) -> None:
        """A running value per key: one dict update per record, no list of values."""
        folded = self._folded
        get = folded.get
        try:
            if self.fold == "sum":
                for key, value in batch:
                    folded[key] = get(key, 0) + value
            elif self.fold == "add":
                for key, value in batch:
                    old = get(key, _MISSING)
                    folded[key] = value if old is _MISSING else old + value
            else:
                better = operator.lt if self.fold == "min" else operator.gt
                for key, value in batch:
                    old = get(key, _MISSING)
                    folded[key] = value if old is _MISSING or better(value, old) else old
        except (TypeError, ValueError) as exc:
            raise ShuffleError(f"map output must be (key, value) pairs with hashable keys and values "
                               f"the combiner's {self.fold}() accepts: {exc}") from exc

    def _buffer_full(self) -> None:
        if self._combine_pays:
            self._combine_in_memory()
            if self._buffered <= self.buffer_records // 2:
                return
            self._combine_pays = False
        self.spill()

    def _combine_in_memory(self) -> None:
        """Replace the buffer's values with the combiner's output for each key."""
        combined: defaultdict[Any, list[Any]] = defaultdict(list)
        count = 0
        for record in self._take_combined():
            try:
                combined[record[0]].append(record[1])
            except TypeError as exc:
                raise ShuffleError(f"a combiner must yield hashable keys; it yielded {record!r}") from exc
            count += 1
        self._groups = combined
        self._buffered = count

    def _take_combined(self) -> Iterable[Record]:
        """Empty the buffer of key -> values through the combiner, checking that it yields pairs."""
        if self.fold is not None:
            folded, self._folded = self._folded, {}
            return folded.items()  # (iterated in C, no generator step per record)
        return self._combined_groups()

    def _combined_groups(self) -> Iterator[Record]:
        groups, self._groups = self._groups, defaultdict(list)
        combiner = self.combiner
        assert combiner is not None
        for key, values in groups.items():
            for record in combiner(key, values):
                yield record if type(record) is tuple and len(record) == 2 else _as_pair(record)

    def _no_lines(self) -> None:
        """Records in the buffer from here on (the lines so far become records again, exactly)."""
        if self._lines is not None:
            self._records.extend(line_records(self._lines))
            self._lines = None

    def _drain_lines(self) -> list[list[Record] | Lines] | None:
        """The buffer's lines partitioned and sorted; None (and the buffer as records) for a partitioner
        that must be called per key."""
        lines, self._lines = self._lines or Lines(), Lines()
        n = self.num_partitions
        ranges = self.partitioner if isinstance(self.partitioner, RangePartitioner) else None
        bounds = ranges.boundaries[:n - 1] if ranges is not None and n > 1 else []
        parts: list[list[Record] | Lines] = []
        if self.partitioner is hash_partition and n > 1:
            by_hash = [Lines() for _ in range(n)]
            for number, line in zip(hash_partitions(line_keys(lines), n), lines, strict=True):
                by_hash[number].append(line)
            for part in by_hash:
                part.sort()
            parts += by_hash
        elif n == 1 or (ranges is not None and line_order_holds(bounds)):
            lines.sort()
            cuts = [bisect.bisect_left(lines, b) for b in bounds]  # a boundary sorts among lines as a key
            parts += [Lines(lines[a:b]) for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
            parts += [Lines() for _ in range(n - len(parts))]
        else:
            self._lines = lines
            self._no_lines()
            return None
        self._buffered = 0
        return parts

    def _drain_buffer(self, sort: bool = True) -> list[list[Record] | Lines]:
        """Partitioned, sorted records of the buffer (combined first when there is a combiner; unsorted
        when not ``sort``)."""
        if self._lines:
            drained = self._drain_lines()
            if drained is not None:
                return drained
        if isinstance(self.partitioner, RangePartitioner) and self.num_partitions > 1:
            return self._drain_by_ranges(self.partitioner)
        parts: list[list[Record]] = [[] for _ in range(self.num_partitions)]
        partition = self.partitioner
        n = self.num_partitions
        if partition is hash_partition and n > 1:  # the default: partitions of a whole batch of keys at once
            records = list(self._take_combined()) if self.combiner is not None else self._records
            self._records = []
            for number, record in zip(hash_partitions([record[0] for record in records], n), records, strict=True):
                parts[number].append(record)
        elif self.combiner is not None and n == 1:
            parts[0] = list(self._take_combined())
        elif self.combiner is not None:
            for record in self._take_combined():
                parts[partition(record[0], n)].append(record)
        else:
            records, self._records = self._records, []
            if n == 1:
                parts[0] = records
            else:
                cache: dict[Any, int] = {}
                for record in records:
                    key = record[0]
                    try:
                        p = cache.get(key)
                    except TypeError:  # unhashable key: no caching
                        p = partition(key, n)
                    else:
                        if p is None:
                            p = cache[key] = partition(key, n)
                    parts[p].append(record)
        self._buffered = 0
        return [self._sorted(part) for part in parts] if sort else list(parts)

    def _sorted(self, records: list[Record]) -> list[Record] | Lines:
        """Records sorted by key; with ``text_runs``, string records as sorted lines when they can be (the
        list of records, the collector's own, is then emptied: its tuples need not outlive the lines)."""
        lines = as_lines(records) if self.text_runs and records and not total_order_in_use() else None
        if lines is None:
            sort_records(records)
            return records
        records.clear()
        lines.sort()
        return lines

    def _drain_by_ranges(self, ranges: RangePartitioner) -> list[list[Record] | Lines]:
        """Range partitioning without a call per record: sort everything once, cut at the boundaries."""
        if self.combiner is not None:
            records = list(self._take_combined())
        else:
            records, self._records = self._records, []
        self._buffered = 0
        bounds = ranges.boundaries[:self.num_partitions - 1]
        ordered: list[Record] | Lines = records
        if line_order_holds(bounds):
            ordered = self._sorted(records)
        else:
            sort_records(records)
        cuts = None
        if isinstance(ordered, Lines):  # a boundary sorts among lines as among their keys
            cuts = [bisect.bisect_left(ordered, b) for b in bounds]
        elif not total_order_in_use():
            keys = [record[0] for record in ordered]
            with contextlib.suppress(TypeError):  # boundaries of another type than the keys
                cuts = [bisect.bisect_left(keys, b) for b in bounds]
        if cuts is None:  # keys sorted in the total order, or mixed types: cut in the total order
            keys = [total_order(record[0]) for record in ordered]
            cuts = [bisect.bisect_left(keys, total_order(b)) for b in bounds]
        spans = list(zip([0, *cuts], [*cuts, len(ordered)], strict=True))
        parts: list[list[Record] | Lines]
        if isinstance(ordered, Lines):  # (a slice of Lines is a plain list)
            parts = [Lines(ordered[start:end]) for start, end in spans]
        else:
            parts = [ordered[start:end] for start, end in spans]
        parts += [[] for _ in range(self.num_partitions - len(parts))]
        return parts

    def spill(self) -> None:
        parts = self._drain_buffer()
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        spill = _Spill(self.spill_dir / f"spill-{os.getpid()}-{len(self._spills)}.run")
        with open(spill.path, "wb") as out:
            for p, records in enumerate(parts):
                if not records:
                    continue
                start = out.tell()
                for batch in encode_part(records):
                    out.write(batch)
                spill.index[p] = (start, out.tell() - start)
        self._spills.append(spill)
        self.spills += 1

    def sorted_records(self) -> Iterator[Record]:
        """A one-partition collector's records in key order (spills merged and combined, then removed)."""
        try:
            if not self._spills:
                (records,) = self._drain_buffer()
                yield from line_records(records) if isinstance(records, Lines) else records
                return
            if self._buffered:
                self.spill()
            runs = [spill.read(0) for spill in self._spills]
            yield from (merge_encoded_runs(runs) if self.combiner is None
                        else combine_sorted(merge_encoded_runs(runs), self.combiner))
        finally:
            for spill in self._spills:
                spill.path.unlink(missing_ok=True)
            self._spills = []

    def finish(self, sink: Callable[[int, Iterator[bytes]], None]) -> None:
        """Give each partition's final sorted run to ``sink(partition, encoded batches)``; remove spills."""
        try:
            if not self._spills:
                parts = self._drain_buffer(sort=self.sort_runs)
                self.records_out = sum(map(len, parts))
                for p, records in enumerate(parts):
                    sink(p, encode_part(records))
                return
            if self._buffered:
                self.spill()
            for p in range(self.num_partitions):
                runs = [spill.read(p) for spill in self._spills]
                if self.combiner is None:
                    sink(p, encode_rounds(merge_rounds(runs)))
                    continue
                sink(p, encode_run(combine_sorted(merge_encoded_runs(runs), self.combiner)))
        finally:
            for spill in self._spills:
                spill.path.unlink(missing_ok=True)
            self._spills = []


def folded_records(runs: Iterable[Iterable[bytes]], fold: str, spill_dir: Path,
                   buffer_records: int = 1_000_000) -> Iterator[Record]:
    """One partition's runs (sorted or not) with each key's values folded into one, in key order: the
    reduce input of a step with a fold combiner. A dict holds a running value per key, so the runs need no
    merge and the map side no sort; past ``buffer_records`` keys it is sorted and spilled, and the spills
    are merged (memory stays bounded however many keys a partition has)."""
    collector = MapOutputCollector(1, hash_partition, None, spill_dir, buffer_records, fold=fold)
    for run in runs:  # (a generator: nothing is read before the reducer's init hook has run)
        collector.collect(decode_run(run))
    yield from collector.sorted_records()


def _check_pairs(batch: list[Any]) -> None:
    """Every record is a (key, value) pair; checked at C speed, explained at Python speed."""
    try:
        if set(map(len, batch)) == {2}:
            return
    except TypeError:
        pass
    for record in batch:
        _as_pair(record)


def _as_pair(record: Any) -> Record:
    try:
        key, value = record
    except (TypeError, ValueError) as exc:
        raise ShuffleError(f"a mapper or combiner must yield (key, value) pairs; it yielded {record!r}") from exc
    return (key, value)


def write_run(out: BinaryIO, blocks: Iterable[bytes]) -> int:
    written = 0
    for block in blocks:
        out.write(block)
        written += len(block)
    return written
