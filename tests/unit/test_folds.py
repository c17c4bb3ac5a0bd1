"""Combiners applied as a running value per key: which ones are recognised, and that the output is the same."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.mapreduce import MRJob, MRStep
from dynamr.mapreduce.folds import detect, is_identity
from dynamr.mapreduce.inline import run_inline
from dynamr.mapreduce.loader import load_job_class
from dynamr.mapreduce.partition import hash_partition, hash_partitions
from dynamr.mapreduce.runs import decode_run
from dynamr.mapreduce.shuffle import MapOutputCollector
from tests.mrdata import read_json_parts


def _combiner(body: str, params: str = "self, key, values") -> Any:
    source = f"from dynamr.mapreduce import MRJob\nclass J(MRJob):\n    def combiner({params}):\n{body}\n"
    return load_job_class(source, "j.py")().combiner


@pytest.mark.parametrize(("body", "fold"), [
    ("        yield key, sum(values)", "sum"),
    ('        """Add them up."""\n        yield key, sum(values)', "sum"),
    ("        yield key, max(values)", "max"),
    ("        yield key, min(values)", "min"),
    ("        yield key, sum(values) + 1", None),
    ("        yield values, sum(key)", None),
    ("        total = sum(values)\n        yield key, total", None),
    ("        yield key, sum(values, 10)", None),
    ("        yield key, len(values)", None),
    ("        if key:\n            yield key, sum(values)", None),
])
def test_only_a_combiner_that_is_exactly_a_fold_is_recognised(body: str, fold: str | None) -> None:
    assert detect(_combiner(body)) == fold


def test_a_redefined_sum_is_not_the_builtin() -> None:
    source = ("from dynamr.mapreduce import MRJob\ndef sum(values):\n    return 42\n"
              "class J(MRJob):\n    def combiner(self, key, values):\n        yield key, sum(values)\n")
    assert detect(load_job_class(source, "redefined.py")().combiner) is None


def _run(collector: MapOutputCollector, records: list[tuple[Any, Any]]) -> list[list[tuple[Any, Any]]]:
    out: dict[int, list[tuple[Any, Any]]] = {}

    def sink(partition: int, blocks: Iterator[bytes]) -> None:
        out[partition] = list(decode_run(blocks))

    collector.collect(records)
    collector.finish(sink)
    return [out.get(p, []) for p in range(collector.num_partitions)]


@pytest.mark.parametrize("fold", ["sum", "min", "max"])
@pytest.mark.parametrize("buffer", [7, 1000, 100_000])
def test_a_fold_gives_what_the_combiner_gives(tmp_path: Path, fold: str, buffer: int) -> None:
    rng = random.Random(buffer)
    records = [(f"k{rng.randrange(300)}", rng.randrange(-50, 50)) for _ in range(5000)]
    reduce = {"sum": sum, "min": min, "max": max}[fold]

    def combiner(key: Any, values: Any) -> Iterator[tuple[Any, Any]]:
        yield key, reduce(values)

    def partition(key: Any, n: int) -> int:
        return hash(key) % n

    listed = _run(MapOutputCollector(3, partition, combiner, tmp_path / "a", buffer), records)
    folded = _run(MapOutputCollector(3, partition, None, tmp_path / "b", buffer, fold=fold), records)
    assert folded == listed


class DeclaredSum(MRJob):
    COMBINE = "sum"

    def mapper(self, _: Any, line: str) -> Iterator[tuple[str, int]]:
        for word in line.split():
            yield word, 1

    def reducer(self, word: str, counts: Any) -> Iterator[tuple[str, int]]:
        yield word, sum(counts)


class BadCombine(DeclaredSum):
    COMBINE = "average"


def test_combine_may_be_declared_and_is_checked(tmp_path: Path) -> None:
    source = tmp_path / "words.txt"
    source.write_text("a b a\nc a b\n" * 50)
    assert DeclaredSum().steps()[0].combine == "sum"
    run_inline(DeclaredSum(), [source], tmp_path / "out", buffer_records=3)
    assert sorted(read_json_parts(tmp_path / "out")) == [("a", 150), ("b", 100), ("c", 50)]
    with pytest.raises(Exception, match="COMBINE must be one of sum, min, max"):
        run_inline(BadCombine(), [source], tmp_path / "bad")
    assert MRStep(combine="max").combine == "max"


def _reducer(body: str, params: str = "self, key, values") -> Any:
    source = f"from dynamr.mapreduce import MRJob\nclass J(MRJob):\n    def reducer({params}):\n{body}\n"
    return load_job_class(source, "j.py")().reducer


@pytest.mark.parametrize(("body", "identity"), [
    ("        for value in values:\n            yield key, value", True),
    ('        """Pass through."""\n        for v in values:\n            yield key, v', True),
    ("        for value in values:\n            yield value, key", False),
    ("        for value in values:\n            yield key, value\n        yield key, 0", False),
    ("        for value in values:\n            yield key, value\n        else:\n            pass", False),
    ("        for value in sorted(values):\n            yield key, value", False),
    ("        for key in values:\n            yield key, key", False),
    ("        for value in values:\n            yield key, (value,)", False),
    ("        for value in values:\n            self.increment_counter('a', 'b')\n            yield key, value",
     False),
])
def test_only_a_reducer_that_passes_values_through_is_the_identity(body: str, identity: bool) -> None:
    assert is_identity(_reducer(body)) is identity


class Passing(MRJob):
    OUTPUT_FORMAT = "text"

    def mapper(self, _: Any, line: str) -> Iterator[tuple[Any, Any]]:
        key, value = line.split(",")
        yield (None if key == "-" else key), (int(value) if value.isdigit() else value)

    def reducer_init(self) -> Iterator[tuple[str, str]]:
        yield "begin", "init"

    def reducer(self, key: Any, values: Any) -> Iterator[tuple[Any, Any]]:
        for value in values:
            yield key, value


class Copying(Passing):
    def reducer(self, key: Any, values: Any) -> Iterator[tuple[Any, Any]]:
        for value in list(values):
            yield key, value


def test_an_identity_reducer_writes_what_calling_it_writes(tmp_path: Path) -> None:
    source = tmp_path / "pairs.txt"
    source.write_text("b,2\na,x\n-,lone\nb,1\nc,z\n" * 40)
    assert is_identity(Passing().reducer) and not is_identity(Copying().reducer)
    for job in (Passing(), Copying()):
        out = tmp_path / type(job).__name__
        run_inline(job, [source], out, num_reducers=2)
    passed, copied = ([sorted(part.read_text().splitlines()) for part in sorted((tmp_path / name).glob("part-*"))]
                      for name in ("Passing", "Copying"))
    assert passed == copied and "begin\tinit" in passed[0] and "lone" in passed[0] + passed[1]


@settings(max_examples=300)
@given(keys=st.lists(st.one_of(st.text(max_size=6), st.binary(max_size=4), st.integers(-5, 5), st.none(),
                               st.tuples(st.integers(0, 3), st.text(max_size=2))), max_size=30),
       parts=st.integers(1, 7), strings_only=st.booleans())
def test_partitions_of_a_batch_are_those_of_each_key(keys: list[Any], parts: int, strings_only: bool) -> None:
    if strings_only:  # the C path, surrogates included
        keys = [k for k in keys if isinstance(k, str)] + ["\udcff", "é"]
    assert hash_partitions(keys, parts) == [hash_partition(k, parts) for k in keys]


def test_string_keys_a_process_has_seen_are_looked_up_and_it_remembers_a_bounded_number(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dynamr.mapreduce import partition

    monkeypatch.setattr(partition, "KNOWN_KEYS", 1000)
    monkeypatch.setattr(partition, "_known", {})
    words = [f"w{i}" for i in range(800)]
    assert hash_partitions(words, 3) == [hash_partition(w, 3) for w in words]  # hashed, and remembered
    assert len(partition._known[3]) == 800
    again = [f"w{i}" for i in range(800)] + ["new", "other"]  # the same keys as new string objects
    partition._known[3]["w5"] = (hash_partition("w5", 3) + 1) % 3  # (a wrong memory shows it was used)
    assert hash_partitions(again, 3)[5] != hash_partition("w5", 3)
    partition._known[3]["w5"] = hash_partition("w5", 3)
    assert hash_partitions(again, 3) == [hash_partition(w, 3) for w in again]  # unknown ones hashed on the way
    assert len(partition._known[3]) == 802
    others = [f"x{i}" for i in range(900)]
    assert hash_partitions(others, 3) == [hash_partition(w, 3) for w in others]
    assert len(partition._known[3]) == 802  # more would pass the bound: not remembered
    mostly_known = words[:600] + others[:500]
    assert hash_partitions(mostly_known, 3) == [hash_partition(w, 3) for w in mostly_known]
    assert partition._known == {}  # looked up, the misses remembered past the bound: forgotten at once


@pytest.mark.parametrize("fold", ["sum", "min", "max", "add"])
@pytest.mark.parametrize("seed", range(6))
def test_the_reduce_side_fold_of_unsorted_runs_gives_what_merging_sorted_runs_and_combining_gives(
        tmp_path: Path, fold: str, seed: int) -> None:
    """A step with a fold combiner writes its map runs unsorted and its reduce folds them in a dict: the
    reducer must see exactly the records a merge of sorted runs, combined, would give it (keys of mixed
    types in the total order, spills of the fold past its buffer included)."""
    from dynamr.mapreduce.folds import as_combiner
    from dynamr.mapreduce.runs import encode_run, merge_encoded_runs, sort_records, use_total_order
    from dynamr.mapreduce.shuffle import combine_sorted, folded_records

    rng = random.Random(seed)
    kinds = [lambda: f"k{rng.randrange(60)}", lambda: rng.randrange(40), lambda: None, lambda: ("t", rng.randrange(5))]
    mixed = seed % 2 == 1
    runs = []
    for _ in range(rng.randrange(1, 6)):
        run = [((rng.choice(kinds) if mixed else kinds[0])(), rng.randrange(-9, 9)) for _ in range(rng.randrange(300))]
        runs.append(run)
    use_total_order(False)
    try:
        sorted_runs = []
        for run in runs:
            ordered = list(run)
            sort_records(ordered)
            sorted_runs.append(list(encode_run(ordered)))
        expected = list(combine_sorted(merge_encoded_runs(sorted_runs), as_combiner(fold)))
        use_total_order(False)
        buffer = rng.choice([5, 50, 100_000])
        got = list(folded_records([list(encode_run(run)) for run in runs], fold, tmp_path / "spill", buffer))
    finally:
        use_total_order(False)
    assert got == expected
    assert not any((tmp_path / "spill").glob("*")) if (tmp_path / "spill").exists() else True  # spills removed


class _KeyJobs:
    """Mappers that read their key, or not, in every way the bytecode can show."""

    def ignores(self, offset, line):  # type: ignore[no-untyped-def]
        yield line, 1

    def reads(self, offset, line):  # type: ignore[no-untyped-def]
        yield line, offset

    def captures(self, offset, line):  # type: ignore[no-untyped-def]
        yield line, [offset + i for i in range(2)]  # a comprehension: a closure over the key

    def introspects(self, offset, line):  # type: ignore[no-untyped-def]
        yield line, locals()

    def deletes(self, offset, line):  # type: ignore[no-untyped-def]
        del offset
        yield line, 1

    def star(self, *args):  # type: ignore[no-untyped-def]
        yield args[1], 1


def _plain_ignores(key: Any, value: Any) -> Iterator[tuple[Any, int]]:
    yield value, 1


def _plain_reads(key: Any, value: Any) -> Iterator[tuple[Any, Any]]:
    yield value, key


@pytest.mark.parametrize(("name", "ignores"), [("ignores", True), ("reads", False), ("captures", False),
                                              ("introspects", False), ("deletes", False), ("star", False)])
def test_a_mapper_that_never_reads_its_key_is_recognised_from_its_bytecode(name: str, ignores: bool) -> None:
    from dynamr.mapreduce.folds import ignores_key

    assert ignores_key(getattr(_KeyJobs(), name)) is ignores


def test_plain_functions_and_callables_and_what_a_reader_then_gives(tmp_path: Path) -> None:
    import functools

    from dynamr.mapreduce.folds import ignores_key
    from dynamr.mapreduce.splits import LocalFile, Split
    from dynamr.mapreduce.tasks import input_reader

    assert ignores_key(_plain_ignores) and not ignores_key(_plain_reads)
    assert not ignores_key(functools.partial(_plain_ignores)) and not ignores_key(None)
    assert not ignores_key(lambda *a: a)  # (a wrapper: anything may reach the key)
    path = tmp_path / "in.txt"
    path.write_text("ab\ncd\n")
    split = Split(0, str(path), 0, 6, 6)

    def keys(step: MRStep, **kw: Any) -> list[Any]:
        return [key for key, _ in input_reader(DeclaredSum(), step, **kw)(LocalFile(path), split)]

    assert keys(MRStep(mapper=_plain_ignores)) == [None, None]  # no offsets computed
    assert keys(MRStep(mapper=_plain_reads)) == [0, 3]
    assert keys(MRStep(mapper=_plain_ignores), keys_needed=True) == [0, 3]  # skip mode names records by key
    assert keys(MRStep(mapper_stream=lambda records: records)) == [0, 3]
