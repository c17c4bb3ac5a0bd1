from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.mapreduce.partition import RangePartitioner
from dynamr.mapreduce.shuffle import MapOutputCollector, decode_run


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
