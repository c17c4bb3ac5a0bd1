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

A run is a stream of msgpack-encoded batches of ``[key, value]`` pairs; decoding uses tuples. Reduce side:
runs from every map are merged a batch at a time (:func:`merge_encoded_runs`; memory: one batch per run)
and grouped by key.
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

import msgpack

from dynamr.mapreduce.folds import as_combiner
from dynamr.mapreduce.keys import total_order
from dynamr.mapreduce.partition import RangePartitioner, hash_partition, hash_partitions

Record = tuple[Any, Any]
Combiner = Callable[[Any, Iterable[Any]], Iterable[Record]]
Partitioner = Callable[[Any, int], int]

BATCH_RECORDS = 4096
#: records taken from a mapper at a time by the collector
COLLECT_BATCH = 1024
_first = itemgetter(0)
_second = itemgetter(1)
_MISSING = object()


class ShuffleError(Exception):
    """Map output that cannot be shuffled (unsortable or unencodable records)."""


class IncomparableKeys(ShuffleError):
    """Keys of types Python cannot compare met in a merge sorted by their natural order: the task runs
    again with every sort and merge in :func:`total_order` (see :func:`use_total_order`)."""


# --- key order ------------------------------------------------------------------------------------------
# Keys sort by their natural order (numbers as numbers, strings as strings), which is fast and what users
# expect. Keys Python cannot compare (None, or a mix of types: mrjob's `yield None, ...` idiom) sort by a
# total order instead, which agrees with the natural one wherever that one is defined, so runs sorted
# either way merge correctly. A sort switches by itself; a merge that meets such keys cannot (part of its
# output is gone), so it raises IncomparableKeys and the task starts over with the total order.

def _total_first(record: Record) -> tuple[Any, ...]:
    return total_order(record[0])


_order: dict[str, Callable[[Record], Any]] = {"key": _first}


def use_total_order(on: bool = True) -> None:
    """Sort and merge keys by :func:`total_order` (for the rest of this process's task, until reset)."""
    _order["key"] = _total_first if on else _first


def total_order_in_use() -> bool:
    return _order["key"] is _total_first


def _sort(records: list[Record]) -> None:
    try:
        records.sort(key=_order["key"])
    except TypeError:
        use_total_order()  # runs already sorted naturally are in total order too
        records.sort(key=_total_first)


def encode_batch(records: list[Record]) -> bytes:
    try:
        packed: bytes = msgpack.packb(records, use_bin_type=True)
    except (TypeError, OverflowError, ValueError) as exc:
        sample = next((r for r in records if _unencodable(r)), records[0])
        raise ShuffleError(f"cannot encode the record {sample!r}: {_unencodable(sample) or exc}") from exc
    return packed


def _unencodable(record: Any) -> str:
    """Why a record cannot be encoded ("" when it can)."""
    try:
        msgpack.packb(record, use_bin_type=True)
    except OverflowError:
        return ("an integer in it is too large: records carry integers from -2**63 to 2**64-1; "
                "emit a larger one as a str (or a float)")
    except (TypeError, ValueError) as exc:
        return (f"{exc}; emit str, bytes, numbers, None, bools, and tuples, lists or dicts of them")
    return ""


def encode_run(records: Iterable[Record]) -> Iterator[bytes]:
    """A sorted stream of records as encoded batches."""
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= BATCH_RECORDS:
            yield encode_batch(batch)
            batch = []
    if batch:
        yield encode_batch(batch)


def decode_run(blocks: Iterable[bytes]) -> Iterator[Record]:
    """Records of a run, from its bytes in any block sizes."""
    unpacker = msgpack.Unpacker(use_list=False, raw=False, max_buffer_size=0)
    for block in blocks:
        unpacker.feed(block)
        for batch in unpacker:
            yield from batch


def decode_batches(blocks: Iterable[bytes]) -> Iterator[tuple[Record, ...]]:
    """The batches of a run as they were encoded (sorted runs stay sorted batch after batch)."""
    unpacker = msgpack.Unpacker(use_list=False, raw=False, max_buffer_size=0)
    for block in blocks:
        unpacker.feed(block)
        yield from unpacker


def merge_encoded_runs(runs: Iterable[Iterable[bytes]]) -> Iterator[Record]:
    """K-way merge of encoded sorted runs, a batch at a time and in C: each round takes, from every run's
    current batch, the records up to the smallest last key among those batches (found by bisection), and
    sorts them together (Timsort merges the sorted slices). Every round empties at least one batch, so the
    Python work is per batch, not per record, and memory is one batch per run. Equal keys stay adjacent;
    their values may interleave across runs (no order of values is promised to a reducer)."""
    key = _order["key"]
    try:
        yield from _merge_batches([iter(decode_batches(run)) for run in runs], key)
    except TypeError as exc:
        if key is _total_first:
            raise
        raise IncomparableKeys(f"keys of types that do not compare met in a merge ({exc})") from exc


def _merge_batches(runs: list[Iterator[tuple[Record, ...]]], key: Callable[[Record], Any]) -> Iterator[Record]:
    heads: list[list[Any]] = []  # [current batch, position, run]
    for run in runs:
        batch = next(run, None)
        if batch:
            heads.append([batch, 0, run])
    while len(heads) > 1:
        bound = min(key(head[0][-1]) for head in heads)
        pieces = []
        for head in heads:
            batch, start = head[0], head[1]
            stop = bisect.bisect_right(batch, bound, lo=start, key=key)
            if stop > start:
                pieces.append(batch[start:stop])
                head[1] = stop
        out = list(itertools.chain.from_iterable(pieces))
        out.sort(key=key)
        yield from out
        for head in heads:
            while head[1] >= len(head[0]):
                batch = next(head[2], None)
                if batch is None:
                    break
                head[0], head[1] = batch, 0
        heads = [head for head in heads if head[1] < len(head[0])]
    if heads:
        batch, start, run = heads[0]
        yield from itertools.islice(batch, start, None)
        for batch in run:
            yield from batch


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
                 spill_dir: Path, buffer_records: int = 1_000_000, fold: str | None = None) -> None:
        self.num_partitions = num_partitions
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

    def _take_combined(self) -> Iterator[Record]:
        """Empty the buffer of key -> values through the combiner, checking that it yields pairs."""
        if self.fold is not None:
            folded, self._folded = self._folded, {}
            yield from folded.items()
            return
        groups, self._groups = self._groups, defaultdict(list)
        combiner = self.combiner
        assert combiner is not None
        for key, values in groups.items():
            for record in combiner(key, values):
                yield record if type(record) is tuple and len(record) == 2 else _as_pair(record)

    def _drain_buffer(self) -> list[list[Record]]:
        """Partitioned, sorted records of the buffer (combined first when there is a combiner)."""
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
        elif self.combiner is not None:
            for record in self._take_combined():
                parts[partition(record[0], n) if n > 1 else 0].append(record)
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
        for part in parts:
            _sort(part)
        return parts

    def _drain_by_ranges(self, ranges: RangePartitioner) -> list[list[Record]]:
        """Range partitioning without a call per record: sort everything once, cut at the boundaries."""
        if self.combiner is not None:
            records = list(self._take_combined())
        else:
            records, self._records = self._records, []
        self._buffered = 0
        _sort(records)
        bounds = ranges.boundaries[:self.num_partitions - 1]
        cuts = None
        if not total_order_in_use():
            keys = [record[0] for record in records]
            with contextlib.suppress(TypeError):  # boundaries of another type than the keys
                cuts = [bisect.bisect_left(keys, b) for b in bounds]
        if cuts is None:  # keys sorted in the total order, or mixed types: cut in the total order
            keys = [total_order(record[0]) for record in records]
            cuts = [bisect.bisect_left(keys, total_order(b)) for b in bounds]
        edges = [0, *cuts, len(records)]
        parts = [records[edges[i]:edges[i + 1]] for i in range(len(edges) - 1)]
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
                for batch in encode_run(records):
                    out.write(batch)
                spill.index[p] = (start, out.tell() - start)
        self._spills.append(spill)
        self.spills += 1

    def finish(self, sink: Callable[[int, Iterator[bytes]], None]) -> None:
        """Give each partition's final sorted run to ``sink(partition, encoded batches)``; remove spills."""
        try:
            if not self._spills:
                parts = self._drain_buffer()
                self.records_out = sum(map(len, parts))
                for p, records in enumerate(parts):
                    sink(p, encode_run(records))
                return
            if self._buffered:
                self.spill()
            for p in range(self.num_partitions):
                merged: Iterator[Record] = merge_encoded_runs([spill.read(p) for spill in self._spills])
                if self.combiner is not None:
                    merged = combine_sorted(merged, self.combiner)
                sink(p, encode_run(merged))
        finally:
            for spill in self._spills:
                spill.path.unlink(missing_ok=True)
            self._spills = []


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
