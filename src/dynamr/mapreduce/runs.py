"""Sorted runs of records: the order keys sort in, how a run is encoded and decoded, and the k-way merge.

A run is a stream of msgpack-encoded *batches*, sorted by key. A batch is either a list of
``[key, value]`` pairs (decoded as tuples) or, for string records with no NUL character and no newline,
one string of lines joined by newlines (a *text batch*). A line is the key, a NUL, then the value: NUL
sorts below every other character, so comparing two lines compares the keys first, then the values.
Such records are sorted *as lines* before they are written; lines then sort, bisect and merge as plain
strings, in C, with no tuple per record, and a pass-through reducer writing text hands the merged lines
to its output with the NULs made tabs. A reader that wants records gets them back exactly
(``line.partition("\\0")``).

Merging (:func:`merge_rounds`) takes the runs a batch at a time; memory is one batch per run.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter, methodcaller
from typing import Any

import msgpack

from dynamr.mapreduce.keys import total_order

Record = tuple[Any, Any]
#: records per encoded batch
BATCH_RECORDS = 4096
_first = itemgetter(0)
#: between the key and the value of a line: below every character a key may hold
SEPARATOR = "\0"
_LINE = SEPARATOR.join
_PARTITION = methodcaller("partition", SEPARATOR)
_KEY_AND_VALUE = itemgetter(0, 2)


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


def sort_records(records: list[Record]) -> None:
    """Sort records by key, in place (switching to the total order if the keys do not compare)."""
    try:
        records.sort(key=_order["key"])
    except TypeError:
        use_total_order()  # runs already sorted naturally are in total order too
        records.sort(key=_total_first)


# --- encoding --------------------------------------------------------------------------------------------

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


class Lines(list[str]):
    """String records as lines ``key NUL value`` (see the module's docstring): sorted, a run's lines sort
    and merge as strings in the records' order."""


def as_lines(records: Sequence[Record]) -> Lines | None:
    """The records as :class:`Lines` (not sorted), or None when a record is not two strings free of NULs
    and newlines. Checked at C speed: the join fails on a non-string, and a search and a count over the
    joined lines find the rest."""
    try:
        lines = Lines(map(_LINE, records))
    except TypeError:
        return None
    text = "".join(lines)
    if "\n" in text or text.count(SEPARATOR) != len(lines):
        return None
    return lines


def line_order_holds(bounds: Sequence[Any]) -> bool:
    """Range boundaries compare with lines as with their keys: strings with no NUL."""
    return all(type(b) is str and SEPARATOR not in b for b in bounds)


def output_text(lines: Iterable[str]) -> str:
    """Lines as the part-file text of their records (``key TAB value`` each)."""
    return ("\n".join(lines) + "\n").replace(SEPARATOR, "\t")


def encode_lines(lines: Sequence[str]) -> Iterator[bytes]:
    """Sorted :class:`Lines` as text batches."""
    for start in range(0, len(lines), BATCH_RECORDS):
        piece = lines[start:start + BATCH_RECORDS]
        try:
            yield msgpack.packb("\n".join(piece))
        except ValueError:  # a lone surrogate: the record path says which record and why
            yield encode_batch(line_records(piece))


def encode_part(part: Sequence[Record] | Lines) -> Iterator[bytes]:
    """A sorted run held in memory: sorted lines as text batches, records as record batches."""
    return encode_lines(part) if isinstance(part, Lines) else encode_run(part)


def encode_run(records: Iterable[Record]) -> Iterator[bytes]:
    """A sorted stream of records as encoded batches."""
    it = iter(records)
    while batch := list(itertools.islice(it, BATCH_RECORDS)):
        yield encode_batch(batch)


def encode_rounds(rounds: Iterable[tuple[bool, Sequence[Any]]]) -> Iterator[bytes]:
    """The rounds of :func:`merge_rounds` encoded again: text rounds (sorted lines) as text batches."""
    for is_text, items in rounds:
        yield from encode_lines(items) if is_text else encode_run(items)


# --- decoding --------------------------------------------------------------------------------------------

def line_records(lines: Iterable[str]) -> list[Record]:
    """Text lines back as (key, value) records."""
    return list(map(_KEY_AND_VALUE, map(_PARTITION, lines)))


def line_keys(lines: Iterable[str]) -> list[str]:
    """The keys of text lines."""
    return list(map(_first, map(_PARTITION, lines)))


def decode_batches(blocks: Iterable[bytes]) -> Iterator[tuple[Record, ...] | str]:
    """The batches of a run as they were encoded: tuples of records, or text (sorted runs stay sorted
    batch after batch)."""
    unpacker = msgpack.Unpacker(use_list=False, raw=False, max_buffer_size=0)
    for block in blocks:
        unpacker.feed(block)
        yield from unpacker


def decode_run(blocks: Iterable[bytes]) -> Iterator[Record]:
    """Records of a run, from its bytes in any block sizes."""
    for batch in decode_batches(blocks):
        yield from line_records(batch.split("\n")) if isinstance(batch, str) else batch


# --- merging ---------------------------------------------------------------------------------------------

def merge_encoded_runs(runs: Iterable[Iterable[bytes]]) -> Iterator[Record]:
    """K-way merge of encoded sorted runs, as records (see :func:`merge_rounds`)."""
    for is_text, items in merge_rounds(runs):
        yield from line_records(items) if is_text else items


def merge_rounds(runs: Iterable[Iterable[bytes]]) -> Iterator[tuple[bool, Sequence[Any]]]:
    """K-way merge of encoded sorted runs, a batch at a time and in C, as rounds ``(is_text, items)``:
    items are text lines while every batch met is text, records otherwise.

    Each round takes, from every run's current batch, the items up to the smallest last one among those
    batches (found by bisection), and sorts them together (Timsort merges the sorted slices). Every round
    empties at least one batch, so the Python work is per batch, not per record, and memory is one batch
    per run. Equal keys stay adjacent; their values may interleave across runs (no order of values is
    promised to a reducer)."""
    key = _order["key"]
    try:
        yield from _Merge([iter(decode_batches(run)) for run in runs]).rounds()
    except TypeError as exc:
        if key is _total_first:
            raise
        raise IncomparableKeys(f"keys of types that do not compare met in a merge ({exc})") from exc


class _Merge:
    """The state of one merge: each run's current batch and position, and whether items are lines."""

    def __init__(self, runs: list[Iterator[tuple[Record, ...] | str]]) -> None:
        firsts = [(batch, run) for run in runs if (batch := next(run, None))]
        self.text = all(type(batch) is str for batch, _ in firsts)
        #: [items of the current batch, position, run]
        self.heads: list[list[Any]] = [[self._items(batch), 0, run] for batch, run in firsts]

    def _items(self, batch: tuple[Record, ...] | str) -> Sequence[Any]:
        if type(batch) is not str:
            return batch
        lines = batch.split("\n")
        return lines if self.text else line_records(lines)

    def _to_records(self) -> None:
        """A batch of records met while merging lines: from here on, everything is records."""
        self.text = False
        for head in self.heads:
            head[0], head[1] = line_records(head[0][head[1]:]), 0

    def rounds(self) -> Iterator[tuple[bool, Sequence[Any]]]:
        while len(self.heads) > 1:
            key = None if self.text else _order["key"]
            bound = min(head[0][-1] for head in self.heads) if key is None else \
                min(key(head[0][-1]) for head in self.heads)
            pieces = []
            for head in self.heads:
                items, start = head[0], head[1]
                stop = bisect.bisect_right(items, bound, lo=start, key=key)
                if stop > start:
                    pieces.append(items[start:stop])
                    head[1] = stop
            out = list(itertools.chain.from_iterable(pieces))
            out.sort(key=key)
            yield self.text, out
            for head in self.heads:
                self._refill(head)
            self.heads = [head for head in self.heads if head[1] < len(head[0])]
        if self.heads:  # one run left: its batches as they are, in order
            items, start, run = self.heads[0]
            yield self.text, items[start:]
            for batch in run:
                yield (True, batch.split("\n")) if type(batch) is str else (False, batch)

    def _refill(self, head: list[Any]) -> None:
        while head[1] >= len(head[0]):
            batch = next(head[2], None)
            if batch is None:
                return
            if self.text and type(batch) is not str:
                head[0], head[1] = (), 0
                self._to_records()
            head[0], head[1] = self._items(batch), 0
