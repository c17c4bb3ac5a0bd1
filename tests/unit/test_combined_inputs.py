"""Small input files packed into shared map tasks: which files share a task, and that a map of several files
runs each file's mapper hooks as if it were its own task."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.mapreduce import MRJob
from dynamr.mapreduce.compressed import work_of
from dynamr.mapreduce.runs import decode_run
from dynamr.mapreduce.splits import COMBINE_FLOOR, OPEN_COST, Split, combine_splits, combine_ways, plan_splits
from dynamr.mapreduce.tasks import Pieces, run_map

MB = 1 << 20


def _cost(split: Split) -> int:
    return work_of(split.path, split.length) + OPEN_COST


@settings(max_examples=300)
@given(sizes=st.lists(st.one_of(st.integers(0, 300_000), st.integers(0, 8 * MB)), max_size=40),
       split_size=st.sampled_from([100 << 10, MB, 4 * MB, 64 * MB]),
       compressed=st.lists(st.booleans(), min_size=40, max_size=40))
def test_every_split_is_in_one_task_in_order_and_only_small_whole_files_share(
        sizes: list[int], split_size: int, compressed: list[bool]) -> None:
    files = [(f"/in/f{i:03d}{'.gz' if compressed[i] else ''}", size) for i, size in enumerate(sizes)]
    splits = plan_splits(files, split_size)
    tasks = combine_splits(splits, split_size)
    assert [s for task in tasks for s in task] == splits, "every split once, in order"
    assert tasks == combine_splits(splits, split_size), "the same splits give the same tasks"
    for task in tasks:
        assert task
        if len(task) > 1:
            assert all(s.start == 0 and s.end == s.file_size for s in task), "only whole files share a task"
            assert sum(map(_cost, task)) <= min(split_size, max(COMBINE_FLOOR, sum(map(_cost, splits))))


def test_thousands_of_small_files_become_a_few_dozen_tasks_and_big_files_keep_their_splits() -> None:
    files = [(f"/in/small-{i:04d}.txt", 8000) for i in range(2000)] + [("/in/big.txt", 200 * MB)]
    tasks = combine_splits(plan_splits(files, 64 * MB), 64 * MB, combine_ways(8))
    small = [t for t in tasks if t[0].path.startswith("/in/small")]
    assert 30 <= len(small) <= 34, len(small)  # about 48 MiB of work over 4 tasks per slot of 8
    assert sum(len(t) for t in small) == 2000
    unknown = combine_splits(plan_splits(files, 64 * MB), 64 * MB, combine_ways(0))
    assert 15 <= len([t for t in unknown if t[0].path.startswith("/in/small")]) <= 17  # 16 ways
    assert [(s.start, s.end) for t in tasks if t[0].path == "/in/big.txt" for s in t] == [
        (0, 50 * MB), (50 * MB, 100 * MB), (100 * MB, 150 * MB), (150 * MB, 200 * MB)]
    assert all(len(t) == 1 for t in tasks if t[0].path == "/in/big.txt")


def test_a_few_small_files_share_one_task_and_a_compressed_one_counts_as_its_text() -> None:
    files = [("/in/a.txt", 300_000), ("/in/b.txt", 300_000), ("/in/c.txt.gz", 300_000), ("/in/d.txt", 300_000)]
    tasks = combine_splits(plan_splits(files, 64 * MB), 64 * MB)
    # the floor is 1 MiB: a and b fit (with their open costs), c counts 1.2 MB and starts a task of its own
    assert [[s.path for s in t] for t in tasks] == [["/in/a.txt", "/in/b.txt"], ["/in/c.txt.gz"], ["/in/d.txt"]]


def test_with_a_split_size_below_a_files_open_cost_nothing_is_combined() -> None:
    files = [(f"/in/{i}", 50) for i in range(10)]
    assert combine_splits(plan_splits(files, 200), 200) == [(s,) for s in plan_splits(files, 200)]


class PerFile(MRJob):
    """Counts lines per file through mapper_init/mapper_final, the way an in-mapper job keyed by file would."""

    def mapper_init(self) -> None:
        self.file = self.input_path
        self.lines = 0

    def mapper(self, key: Any, line: Any) -> Iterator[tuple[Any, Any]]:
        assert self.input_path == self.file
        self.lines += 1
        yield "lines", 1

    def mapper_final(self) -> Iterator[tuple[Any, Any]]:
        yield self.file, self.lines

    def combiner(self, key: Any, values: Any) -> Iterator[tuple[Any, Any]]:
        yield key, sum(values)

    def reducer(self, key: Any, values: Any) -> Iterator[tuple[Any, Any]]:
        yield key, sum(values)


def test_a_map_of_several_files_runs_each_files_hooks_with_its_path_and_combines_across_them(
        tmp_path: Path) -> None:
    job = PerFile()
    step = job.steps()[0]
    contents = {"/a": ["x", "y"], "/b": [], "/c": ["z"]}

    def piece(path: str) -> tuple[Any, Iterator[tuple[Any, Any]]]:
        def begin() -> None:
            job.input_path = path
        return begin, iter([(i, line) for i, line in enumerate(contents[path])])

    out: dict[int, bytes] = {}

    def sink(partition: int, blocks: Iterator[bytes]) -> None:
        out[partition] = b"".join(blocks)

    produced = run_map(job, step, Pieces(map(piece, contents)), 1, tmp_path / "spill", sink)
    assert produced == 6  # three "lines" records and one per file
    assert sorted(decode_run(iter([out[0]]))) == [("/a", 2), ("/b", 0), ("/c", 1), ("lines", 3)]
