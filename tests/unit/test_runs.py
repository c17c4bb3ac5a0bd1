"""Text batches in runs: string records sorted and written as lines decode, merge and write exactly as
records do (tabs and control characters included)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from dynamr.mapreduce.api import MRJob
from dynamr.mapreduce.inline import run_inline
from dynamr.mapreduce.partition import RangePartitioner, hash_partition
from dynamr.mapreduce.runs import (
    BATCH_RECORDS,
    Lines,
    as_lines,
    decode_batches,
    decode_run,
    encode_batch,
    encode_lines,
    encode_run,
    line_order_holds,
    line_records,
    merge_encoded_runs,
    merge_rounds,
)
from dynamr.mapreduce.shuffle import MapOutputCollector
from dynamr.mapreduce.tasks import format_batches, format_output

Record = tuple[Any, Any]


def _key(record: Record) -> Any:
    return record[0]


def test_string_records_go_as_sorted_lines_and_come_back_as_the_same_tuples() -> None:
    records = [("apple", "1 2 3"), ("pear", ""), ("", "empty key"), ("ключ", "значение ✓")]
    lines = as_lines(records)
    assert lines is not None
    lines.sort()
    [block] = list(encode_lines(lines))
    [batch] = list(decode_batches([block]))
    assert isinstance(batch, str), "a text batch"
    assert msgpack.unpackb(block) == batch
    assert list(decode_run([block])) == sorted(records)


@pytest.mark.parametrize("record", [
    ("a\0b", "NUL in the key"), ("key", "NUL\0in the value"), ("key", "new\nline"), ("new\nline", "in the key"),
    (1, "not a string"), ("key", 2.5), ("key", None), ("a", "b", "c"), ("key", b"bytes"),
])
def test_records_whose_lines_would_not_sort_as_they_do_are_not_lines(record: Any) -> None:
    assert as_lines([("k0", "v0"), record]) is None


@pytest.mark.parametrize(("bounds", "holds"), [
    (["a", "m"], True), ([], True), (["a\tb", "a\x01", "b\n"], True), (["a\0"], False), ([3], False),
])
def test_range_boundaries_cut_lines_only_where_they_sort_as_keys(bounds: list[Any], holds: bool) -> None:
    assert line_order_holds(bounds) is holds


def test_a_lone_surrogate_is_explained_as_for_any_record() -> None:
    from dynamr.mapreduce.runs import ShuffleError

    with pytest.raises(ShuffleError, match="cannot encode the record"):
        list(encode_lines(Lines(["a\0ok", "b\0\udc80"])))


def _string(rng: random.Random, rare: float) -> str:
    # now and then a NUL or a newline: such records cannot go as lines (tabs and controls can)
    alphabet = "ab\0z\n" if rng.random() < rare else "ab\t\x01yz"
    return "".join(rng.choices(alphabet, k=rng.randrange(0, 4)))


def _run(rng: random.Random) -> tuple[list[Record], list[bytes]]:
    """A sorted run as a map task may write it: batches of lines where every record of the batch can go
    as a line, record batches elsewhere (by key, then value: line order where lines are possible)."""
    rare = rng.choice([0.0, 0.002, 0.02])
    records = sorted((_string(rng, rare), _string(rng, rare)) for _ in range(rng.randrange(0, 300)))
    size = rng.randrange(1, 30)
    blocks = []
    for i in range(0, len(records), size):
        piece = records[i:i + size]
        lines = as_lines(piece)
        blocks += list(encode_lines(lines)) if lines is not None else [encode_batch(piece)]
    return records, blocks


@pytest.mark.parametrize("seed", range(60))
def test_merging_runs_of_text_and_record_batches_equals_a_record_by_record_merge(seed: int) -> None:
    rng = random.Random(seed)
    runs = [_run(rng) for _ in range(rng.randrange(1, 7))]
    merged = list(merge_encoded_runs([blocks for _, blocks in runs]))
    expected = list(heapq.merge(*(records for records, _ in runs), key=_key))
    assert [r[0] for r in merged] == [r[0] for r in expected], "the keys come out in order"
    assert sorted(merged) == sorted(expected), "every record once, as it was"
    assert all(type(r) is tuple for r in merged)


@pytest.mark.parametrize("seed", range(30))
def test_merged_rounds_written_as_text_equal_the_records_written_as_text(seed: int) -> None:
    rng = random.Random(seed)
    runs = [_run(rng) for _ in range(rng.randrange(1, 7))]
    rounds = list(merge_rounds([blocks for _, blocks in runs]))
    written = b"".join(format_batches((Lines(items) if text else items for text, items in rounds), "text"))
    expected = list(heapq.merge(*(records for records, _ in runs), key=_key))
    keys = [r[0] for text, items in rounds for r in (line_records(items) if text else items)]
    assert keys == [r[0] for r in expected], "the keys come out in order"
    # values of equal keys may come in any order: compare the lines as a multiset
    assert sorted(written.decode().splitlines(keepends=True)) == \
        sorted(b"".join(format_output(expected, "text")).decode().splitlines(keepends=True))


def test_a_merge_of_lines_that_meets_a_record_batch_goes_on_in_records() -> None:
    text_run = list(encode_lines(Lines(f"k{i:03d}\0v" for i in range(0, 300, 2))))
    mixed_run = [*encode_lines(Lines(f"k{i:03d}\0v" for i in range(1, 100, 2))),
                 encode_batch([(f"k{i:03d}", "tab\there") for i in range(101, 300, 2)])]
    rounds = list(merge_rounds([text_run, mixed_run]))
    assert rounds[0][0] and not rounds[-1][0], "lines first, records once a record batch came"
    merged = list(merge_encoded_runs([text_run, mixed_run]))
    assert [k for k, _ in merged] == [f"k{i:03d}" for i in range(300)]
    assert merged[101] == ("k101", "tab\there") and merged[100] == ("k100", "v")


def test_all_text_runs_merge_as_lines_in_key_order() -> None:
    runs = [[f"{k:04d}" for k in range(start, 3000, 7)] for start in range(5)]
    blocks = [list(encode_lines(Lines(f"{k}\0v{k}" for k in run))) for run in runs]
    rounds = list(merge_rounds(blocks))
    assert all(text for text, _ in rounds), "text all the way: no record made"
    lines = [line for _, items in rounds for line in items]
    assert lines == sorted(f"{k}\0v{k}" for run in runs for k in run)


def _by_length(key: Any, n: int) -> int:
    return len(key) % n


@pytest.mark.parametrize("partitioner", ["hash", "ranges", "custom"])
@pytest.mark.parametrize("buffer", [10_000, 97])
@pytest.mark.parametrize("bad", [None, 100, 1234, 2999])
def test_a_collector_with_text_runs_writes_what_one_without_writes(tmp_path: Path, partitioner: str,
                                                                   buffer: int, bad: int | None) -> None:
    """Lines while every batch can be lines, records from the first that cannot (at ``bad``)."""
    rng = random.Random(buffer)
    records = [(_string(rng, 0) + "xy", _string(rng, 0)) for _ in range(3000)]
    if bad is not None:
        records[bad] = ("bad\0key", "from its batch on, the task's records are records")
    partition = {"hash": hash_partition, "ranges": RangePartitioner(["ay", "bx", "z"]),
                 "custom": _by_length}[partitioner]
    outputs = []
    for text in (False, True):
        collector = MapOutputCollector(4, partition, None, tmp_path / f"{text}", buffer, text_runs=text)
        collector.collect(iter(records))
        got: dict[int, list[bytes]] = {}
        collector.finish(lambda p, blocks, got=got: got.setdefault(p, list(blocks)))
        outputs.append(got)
        if text and bad is None:
            assert any(isinstance(b, str) for blocks in got.values() for b in decode_batches(blocks))
    plain, text = outputs
    for p in range(4):
        want = list(decode_run(plain.get(p, [])))
        have = list(decode_run(text.get(p, [])))
        assert [k for k, _ in have] == [k for k, _ in want], f"partition {p}: the same keys in order"
        assert sorted(have) == sorted(want)


def test_without_lines_every_batch_is_records() -> None:
    records = [(f"k{i:05d}", "v") for i in range(3 * BATCH_RECORDS)]
    blocks = list(encode_run(records))
    assert len(blocks) == 3 and not any(isinstance(b, str) for b in decode_batches(blocks))


class _PassThrough(MRJob):
    """Keys and values with tabs, control characters, NULs and non-strings, through an identity reducer."""

    OUTPUT_FORMAT = "text"

    def mapper(self, offset: int, line: str) -> Iterator[tuple[Any, Any]]:
        n = int(line)
        key = f"k{n % 97:02d}" + ("\t" if n % 5 == 0 else "") + ("\x01" if n % 7 == 0 else "")
        value = f"v{n}" + ("\0nul" if n == 4242 else "")
        yield key, value

    def reducer(self, key: Any, values: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
        for value in values:
            yield key, value


@pytest.mark.parametrize("buffer", [1_000_000, 300])
def test_a_pass_through_job_writes_every_record_as_the_record_path_does(tmp_path: Path, buffer: int) -> None:
    data = tmp_path / "numbers.txt"
    data.write_text("".join(f"{n}\n" for n in range(5000)))
    run_inline(_PassThrough(), [data], tmp_path / "out", num_reducers=3, split_size=4000, buffer_records=buffer)
    written = [line for part in sorted((tmp_path / "out").glob("part-*"))
               for line in part.read_bytes().decode().split("\n")[:-1]]
    expected = [f"{k}\t{v}" for k, v in (next(_PassThrough().mapper(0, str(n))) for n in range(5000))]
    assert sorted(written) == sorted(expected), "every record once, written as the record path writes it"
    for part in sorted((tmp_path / "out").glob("part-*")):
        keys = [line[:line.index("\tv")] for line in part.read_text().split("\n")[:-1]]  # (keys hold tabs)
        assert keys == sorted(keys), "each part in key order"
