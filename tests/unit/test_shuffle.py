from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.mapreduce.partition import RangePartitioner
from dynamr.mapreduce.runs import decode_run
from dynamr.mapreduce.shuffle import MapOutputCollector


def _collect(tmp: Path, records: list[tuple[int, int]], partitioner: object, n: int, buffer: int,
             combiner: object = None) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {}

    def sink(p: int, blocks: Iterator[bytes]) -> None:
        out[p] = list(decode_run(blocks))

    collector = MapOutputCollector(n, partitioner, combiner, tmp, buffer)  # type: ignore[arg-type]
    collector.collect(records)
    collector.finish(sink)
    return out


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.integers(0, 50), max_size=300), bounds=st.lists(st.integers(0, 50), max_size=6),
       n=st.integers(1, 5), buffer=st.integers(1, 120), combine=st.booleans())
def test_range_partitioning_by_cutting_equals_calling_per_record(tmp_path_factory, keys: list[int],  # type: ignore[no-untyped-def]
                                                                 bounds: list[int], n: int, buffer: int,
                                                                 combine: bool) -> None:
    records = [(k, i) for i, k in enumerate(keys)]
    ranges = RangePartitioner(sorted(bounds))

    def combiner(key, values):  # type: ignore[no-untyped-def]
        yield key, sum(values)

    comb = combiner if combine else None
    fast = _collect(tmp_path_factory.mktemp("a"), records, ranges, n, buffer, comb)
    slow = _collect(tmp_path_factory.mktemp("b"), records, lambda k, m: ranges(k, m), n, buffer, comb)
    assert {p: sorted(v) for p, v in fast.items()} == {p: sorted(v) for p, v in slow.items()}
    for p, part in fast.items():
        assert [k for k, _ in part] == sorted(k for k, _ in part)
        assert all(ranges(k, n) == p for k, _ in part)


def _sum_combiner(key: int, values: Iterator[int]) -> Iterator[tuple[int, int]]:
    yield key, sum(values)


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.integers(0, 40), max_size=400), n=st.integers(1, 4), buffer=st.integers(1, 100))
def test_combined_output_is_exact_whatever_the_buffer(tmp_path_factory, keys: list[int], n: int,  # type: ignore[no-untyped-def]
                                                      buffer: int) -> None:
    records = [(k, i) for i, k in enumerate(keys)]
    out = _collect(tmp_path_factory.mktemp("c"), records, lambda k, m: k % m, n, buffer, _sum_combiner)
    merged = {k: v for part in out.values() for k, v in part}
    expected: dict[int, int] = {}
    for k, v in records:
        expected[k] = expected.get(k, 0) + v
    assert merged == expected and sum(len(part) for part in out.values()) == len(expected)
    for p, part in out.items():
        assert [k for k, _ in part] == sorted(k for k, _ in part) and all(k % n == p for k, _ in part)


def test_a_full_buffer_is_combined_in_memory_and_spills_only_when_that_does_not_pay(tmp_path: Path) -> None:
    few = MapOutputCollector(2, lambda k, m: k % m, _sum_combiner, tmp_path / "few", 100)  # type: ignore[arg-type]
    few.collect((i % 10, 1) for i in range(10_000))
    assert few.spills == 0, "10 distinct keys: combining keeps the buffer small, nothing is spilled"

    many = MapOutputCollector(2, lambda k, m: k % m, _sum_combiner, tmp_path / "many", 100)  # type: ignore[arg-type]
    many.collect((i, 1) for i in range(10_000))
    assert many.spills >= 90, "distinct keys: combining cannot shrink the buffer, so it spills"
    out: dict[int, list[tuple[int, int]]] = {}
    many.finish(lambda p, blocks: out.__setitem__(p, list(decode_run(blocks))))
    assert sorted(k for part in out.values() for k, _ in part) == list(range(10_000))


def test_a_combiner_yielding_an_unhashable_key_gets_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from dynamr.mapreduce.shuffle import ShuffleError

    def listing(key: int, values: Iterator[int]) -> Iterator[tuple[list[int], int]]:
        yield [key], sum(values)

    collector = MapOutputCollector(1, lambda k, m: 0, listing, tmp_path, 10)  # type: ignore[arg-type]
    with pytest.raises(ShuffleError, match="hashable keys"):
        collector.collect((i % 3, 1) for i in range(100))


@pytest.mark.parametrize("seed", range(30))
def test_the_batched_merge_of_encoded_runs_equals_a_record_by_record_merge(seed: int) -> None:
    import heapq
    import random

    from dynamr.mapreduce.runs import encode_batch, merge_encoded_runs

    rng = random.Random(seed)
    runs = []
    for _ in range(rng.randrange(1, 8)):
        records = sorted(((rng.randrange(50), rng.random()) for _ in range(rng.randrange(0, 300))),
                         key=lambda r: r[0])
        size = rng.randrange(1, 40)
        runs.append((records, [encode_batch(records[i:i + size]) for i in range(0, len(records), size)]))
    merged = list(merge_encoded_runs([blocks for _, blocks in runs]))
    expected = list(heapq.merge(*(records for records, _ in runs), key=lambda r: r[0]))
    assert [r[0] for r in merged] == [r[0] for r in expected], "the keys come out in order"
    assert sorted(merged) == sorted(expected), "every record once"
