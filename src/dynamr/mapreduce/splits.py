"""Input splits and the readers that turn a split's bytes into records.

Splits are even byte ranges of each input file (a file smaller than the split size is one split). Records
are aligned at read time, as Hadoop does: a split owns every line that *starts* inside it, so a reader
skips the partial line at its start (unless the split starts the file) and reads past its end to finish
its last line. Every line is read exactly once, whatever the split and chunk boundaries.

Readers pull bytes through a :class:`RangeSource` (a local file or a file on the store), first the split's
own range, then small steps past its end until the last line is complete, so a split never reads much
more than its share. Pure logic over that interface. A compressed file (:mod:`dynamr.mapreduce.compressed`)
is one split, and the line readers read its uncompressed bytes.
"""

from __future__ import annotations

import codecs
import functools
import itertools
import json
import operator
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dynamr.mapreduce.compressed import Decompressed, codec_of, work_of
from dynamr.mapreduce.runs import decode_run

OVERRUN_STEP = 64 * 1024


@dataclass(frozen=True, slots=True)
class Split:
    index: int
    path: str
    start: int
    end: int
    file_size: int

    @property
    def length(self) -> int:
        return self.end - self.start


class RangeSource(Protocol):
    def read(self, offset: int, length: int) -> Iterator[bytes]:
        """Bytes of [offset, offset+length), in order, in pieces; fewer at the end of the file."""


def plan_splits(files: Sequence[tuple[str, int]], split_size: int, whole_files: bool = False,
                whole: Container[str] = ()) -> list[Split]:
    """Cut each (path, size) into ``ceil(size / split_size)`` splits of even size (one split for every
    file with ``whole_files``, for the paths in ``whole``, and for compressed files)."""
    if split_size < 1:
        raise ValueError("split size must be positive")
    out: list[Split] = []
    for path, size in files:
        pieces = (1 if whole_files or size <= split_size or path in whole or codec_of(path) is not None
                  else -(-size // split_size))
        for i in range(pieces):
            out.append(Split(index=len(out), path=path, start=size * i // pieces, end=size * (i + 1) // pieces,
                             file_size=size))
    return out


#: a job's small files are spread over this many map tasks per task slot of the cluster, where they fill
#: that many (over COMBINE_WAYS when the slots are not known)
WAYS_PER_SLOT = 4
COMBINE_WAYS = 16
#: the least a map task of small files is filled to (running a task at all costs tens of milliseconds)
COMBINE_FLOOR = 1 << 20
#: what a file counts for on top of its bytes when tasks are filled (opening and reading it costs a little)
OPEN_COST = 16 << 10


def combine_ways(slots: int) -> int:
    """How many tasks a job's small files are spread over, on a cluster of ``slots`` task slots."""
    return WAYS_PER_SLOT * slots if slots > 0 else COMBINE_WAYS


def combine_splits(splits: Sequence[Split], split_size: int, ways: int = COMBINE_WAYS) -> list[tuple[Split, ...]]:
    """The map tasks' inputs, in order: runs of whole small files packed together, every other split alone.

    A task costs far more than reading a small file, so a job of thousands of small files would spend its
    time starting tasks. As Hadoop's CombineFileInputFormat and Spark's file partitions do, files are packed
    into tasks of ``target`` bytes: the small files' bytes (each plus :data:`OPEN_COST`) over ``ways``
    tasks (:func:`combine_ways`), at least :data:`COMBINE_FLOOR`, at most the split size. A whole file is
    small when it counts for less than that (a compressed one counted as the text it holds). Deterministic:
    the same splits give the same tasks (a restarted coordinator finds its tasks again).
    """
    def cost(split: Split) -> int:
        return work_of(split.path, split.length) + OPEN_COST

    whole = [s for s in splits if s.start == 0 and s.end == s.file_size and work_of(s.path, s.length) < split_size]
    target = min(split_size, max(COMBINE_FLOOR, sum(map(cost, whole)) // max(1, ways)))
    small = {s.index for s in whole if cost(s) < target}
    out: list[list[Split]] = []
    group: list[Split] = []  # the open group (the last in ``out``)
    filled = 0
    for split in splits:
        if split.index not in small:
            out.append([split])
            group = []
        elif group and filled + cost(split) <= target:
            group.append(split)
            filled += cost(split)
        else:
            group, filled = [split], cost(split)
            out.append(group)
    return [tuple(pieces) for pieces in out]


def _blocks(source: RangeSource, split: Split) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) from one byte before the split (to find the first line start) to past its end."""
    begin = split.start - 1 if split.start > 0 else 0
    position = begin
    for block in source.read(begin, split.end - begin):
        yield position, block
        position += len(block)
    while position < split.file_size:
        got = 0
        for block in source.read(position, OVERRUN_STEP):
            yield position + got, block
            got += len(block)
        if got == 0:
            return
        position += got


def line_chunks(source: RangeSource, split: Split) -> Iterator[tuple[int, bytes]]:
    """The lines a split owns, a block at a time: (offset of the first line, the lines as one ``bytes``).

    Every chunk holds whole lines, each with its newline (the file's last line may have none). The Python
    work is per block (``rfind``, ``find``, slicing), none per line. A compressed file's lines are those of
    its uncompressed bytes (:func:`uncompressed`).
    """
    opened = uncompressed(source, split)
    if opened is None:
        return
    source, split = opened
    skip_first = split.start > 0  # the line that began before the split belongs to the previous one
    pending: list[bytes] = []  # the start of a line that continues in the next block
    line_start = split.start - 1 if skip_first else 0  # file offset of pending's first byte
    end = split.end
    for _, block in _blocks(source, split):
        if skip_first:
            newline = block.find(b"\n")
            if newline < 0:
                line_start += len(block)
                continue
            skip_first = False
            line_start += newline + 1
            block = block[newline + 1:]
        last = block.rfind(b"\n")
        if last < 0:
            pending.append(block)
            continue
        if pending:
            pending.append(block[:last + 1])
            data = b"".join(pending)
            pending = []
        else:
            data = block if last == len(block) - 1 else block[:last + 1]
        if line_start + len(data) >= end:  # a line in this chunk starts at or after the end: cut there
            if line_start >= end:
                return
            newline = data.find(b"\n", end - 1 - line_start)
            yield line_start, data[:newline + 1]
            return
        yield line_start, data
        line_start += len(data)
        if last < len(block) - 1:
            pending.append(block[last + 1:])
    if pending and not skip_first and line_start < end:
        yield line_start, b"".join(pending)


#: the size of a compressed file's uncompressed bytes, as far as its split knows (read to the end)
UNBOUNDED = 1 << 62


def uncompressed(source: RangeSource, split: Split) -> tuple[RangeSource, Split] | None:
    """What a line reader reads of a split: for a compressed file, its uncompressed bytes, all of them (the
    split then runs to :data:`UNBOUNDED`); any other file as it is. A source that already decompresses is
    taken as it is. None for a piece of a compressed file that does not start at 0: a compressed file is one
    split, so no line starts in such a piece."""
    codec = codec_of(split.path)
    if codec is not None and split.start > 0:
        return None
    if codec is None and not isinstance(source, Decompressed):
        return source, split
    whole = Split(index=split.index, path=split.path, start=0, end=UNBOUNDED, file_size=UNBOUNDED)
    if isinstance(source, Decompressed) or codec is None:
        return source, whole
    return Decompressed(source, codec, split.file_size, split.path), whole


def line_batches(source: RangeSource, split: Split) -> Iterator[tuple[list[int], list[bytes]]]:
    """The lines a split owns, a chunk at a time: (offsets of their first bytes, lines without newlines)."""
    for start, data in line_chunks(source, split):
        pieces = data.split(b"\n")
        if data.endswith(b"\n"):
            pieces.pop()
        yield _offsets(start, map(len, pieces)), pieces


def _offsets(start: int, lengths: Iterator[int]) -> list[int]:
    """The offsets of lines of these lengths (without their newlines) laid end to end from ``start``."""
    offsets = list(itertools.accumulate(map(operator.add, lengths, itertools.repeat(1)), initial=start))
    offsets.pop()
    return offsets


def read_lines(source: RangeSource, split: Split) -> Iterator[tuple[int, bytes]]:
    """(offset of the line's first byte, the line without its newline) for every line the split owns."""
    return itertools.chain.from_iterable(itertools.starmap(zip, line_batches(source, split)))


#: the counter of input bytes that were not valid in the job's INPUT_ENCODING (each became U+FFFD)
REPLACED = ("dynamr", "undecodable input bytes replaced")
Replaced = Callable[[int], None]


def _ignore(count: int) -> None:
    return None


def text_records(source: RangeSource, split: Split, encoding: str = "utf-8", replaced: Replaced = _ignore,
                 lines: Replaced = _ignore, offsets: bool = True) -> Iterator[tuple[Any, Any]]:
    """(byte offset, line as str) for each line; a trailing carriage return is dropped. Without
    ``offsets``, (None, line): for a mapper that never reads the key, the offsets are not computed.

    A batch of lines is decoded at once and split again (a newline byte never occurs inside a multi-byte
    sequence of UTF-8 or of a single-byte encoding, so this is the same as decoding line by line, with one
    call instead of one per line). The records of a batch come out of ``zip`` through ``itertools.chain``:
    no Python step per line. Bytes not valid in ``encoding`` become U+FFFD and are counted by ``replaced``;
    ``lines`` is told how many lines each batch holds.
    """
    return itertools.chain.from_iterable(_decoded_batches(source, split, encoding, replaced, lines, offsets))


def _counting_handler(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _bad[0] += exc.end - exc.start
    return "\ufffd", exc.end


_bad = [0]
codecs.register_error("dynamr-count", _counting_handler)


def decode_counting(data: bytes, encoding: str, replaced: Replaced) -> str:
    """``data`` decoded; invalid bytes become U+FFFD and their number goes to ``replaced``."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        _bad[0] = 0
        text = data.decode(encoding, "dynamr-count")
        replaced(_bad[0])
        return text


def _decoded_batches(source: RangeSource, split: Split, encoding: str, replaced: Replaced,
                     lines: Replaced, with_offsets: bool) -> Iterator[Iterator[tuple[int | None, str]]]:
    for start, data in line_chunks(source, split):
        text = decode_counting(data, encoding, replaced)
        strs = _split_lines(text)
        lines(len(strs))
        if not with_offsets:
            yield zip(itertools.repeat(None), _without_returns(strs, text))
            continue
        if len(text) == len(data):  # a character per byte (ASCII): offsets from the strings' lengths
            offsets = _offsets(start, map(len, strs))
        else:
            offsets = _offsets(start, map(len, data.split(b"\n")[:len(strs)]))
        yield zip(offsets, _without_returns(strs, text), strict=True)


def text_chunks(source: RangeSource, split: Split, encoding: str = "utf-8",
                replaced: Replaced = _ignore) -> Iterator[str]:
    """The split's lines as decoded text, many whole lines per item (no offsets, no object per line):
    for readers that take text in bulk, as a dataflow stage whose first step splits it into words."""
    for _, data in line_chunks(source, split):
        yield decode_counting(data, encoding, replaced)


def lines_of(text: str) -> list[str]:
    """The lines of a chunk of whole lines, without newlines (a trailing carriage return dropped)."""
    return _without_returns(_split_lines(text), text)


def _split_lines(text: str) -> list[str]:
    strs = text.split("\n")
    if text.endswith("\n"):
        strs.pop()
    return strs


def _without_returns(strs: list[str], text: str) -> list[str]:
    if "\r" in text:
        return [line[:-1] if line.endswith("\r") else line for line in strs]
    return strs


def bytes_records(source: RangeSource, split: Split) -> Iterator[tuple[Any, Any]]:
    """(byte offset, line as bytes, exactly as stored: no decoding, a carriage return kept) for each line."""
    return read_lines(source, split)


def json_records(source: RangeSource, split: Split) -> Iterator[tuple[Any, Any]]:
    for offset, line in read_lines(source, split):
        if line.strip():
            try:
                yield offset, json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{split.path}: byte {offset}: not a JSON line: {exc}") from exc


def whole_file_records(source: RangeSource, split: Split) -> Iterator[tuple[Any, Any]]:
    yield split.path, b"".join(source.read(0, split.file_size))


def stored_records(source: RangeSource, split: Split) -> Iterator[tuple[Any, Any]]:
    """The records of a file a job wrote with ``OUTPUT_FORMAT = "records"`` (read whole: one split)."""
    return decode_run(source.read(0, split.file_size))


Reader = Callable[[RangeSource, Split], Iterator[tuple[Any, Any]]]
READERS: dict[str, Reader] = {"text": text_records, "bytes": bytes_records, "json": json_records,
                              "whole_file": whole_file_records, "records": stored_records}
INPUT_FORMATS = tuple(READERS)
#: formats of lines (a compressed file is read decompressed in these; the others give its bytes as stored)
LINE_FORMATS = ("text", "bytes", "json")
#: formats whose files are read whole, one split each (a "records" file is a stream of msgpack batches)
WHOLE_FILE_FORMATS = ("whole_file", "records")


def reader_for(input_format: str, encoding: str = "utf-8", replaced: Replaced = _ignore,
               lines: Replaced = _ignore, offsets: bool = True) -> Reader:
    """The reader of an input format; text is decoded with ``encoding``, replaced bytes counted, and its
    lines counted by ``lines`` (a batch at a time); without ``offsets``, text lines have None keys."""
    if input_format == "text":
        return functools.partial(text_records, encoding=encoding, replaced=replaced, lines=lines,
                                 offsets=offsets)
    return READERS[input_format]


class LocalFile:
    """A :class:`RangeSource` over a file on this machine's disk."""

    def __init__(self, path: Path, block: int = 1 << 20) -> None:
        self.path = path
        self.block = block

    def read(self, offset: int, length: int) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            f.seek(offset)
            remaining = length
            while remaining > 0:
                data = f.read(min(self.block, remaining))
                if not data:
                    return
                remaining -= len(data)
                yield data
