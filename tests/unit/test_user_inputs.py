"""Inputs and outputs users can trust: encodings, binary records, keys of any type, clear errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dynamr.errors import BadRequestError
from dynamr.mapreduce import MRJob, MRStep
from dynamr.mapreduce.inline import run_inline
from dynamr.mapreduce.keys import total_order
from dynamr.mapreduce.shuffle import ShuffleError
from dynamr.mapreduce.splits import REPLACED
from tests.mrdata import read_json_parts

LATIN1 = "café naïve déjà vu\nœuvre? no: Ÿ is not latin-1, but é, ï and à are\n".replace("œ", "oe").replace("Ÿ", "Y")


class Lines(MRJob):
    OUTPUT_FORMAT = "json"

    def mapper(self, offset, line):  # type: ignore[no-untyped-def]
        yield offset, line

    def reducer(self, offset, lines):  # type: ignore[no-untyped-def]
        for line in lines:
            yield offset, line


class Latin1Lines(Lines):
    INPUT_ENCODING = "latin-1"


def test_text_not_valid_in_the_encoding_is_counted_and_the_right_encoding_reads_it(tmp_path: Path) -> None:
    source = tmp_path / "latin1.txt"
    source.write_bytes(LATIN1.encode("latin-1"))
    result = run_inline(Lines(), [source], tmp_path / "out")
    invalid = sum(1 for ch in LATIN1 if ord(ch) > 127)
    assert result.counters[REPLACED] == invalid, "every byte that is not UTF-8 is counted"
    assert "\ufffd" in "".join(v for _, v in read_json_parts(tmp_path / "out"))
    result = run_inline(Latin1Lines(), [source], tmp_path / "out2")
    assert REPLACED not in result.counters
    assert [v for _, v in sorted(read_json_parts(tmp_path / "out2"))] == LATIN1.splitlines()


class SortBinary(MRJob):
    INPUT_FORMAT = "bytes"
    OUTPUT_FORMAT = "text"

    def mapper(self, offset, record):  # type: ignore[no-untyped-def]
        yield record[:10], record[10:]

    def reducer(self, key, payloads):  # type: ignore[no-untyped-def]
        for payload in payloads:
            yield key, payload


def test_binary_records_stay_binary_through_a_sort(tmp_path: Path) -> None:
    rng = random.Random(7)
    alphabet = bytes(b for b in range(256) if b not in (0x0A, 0x09, 0x0D))  # no newline, tab or CR inside
    records = [bytes(rng.choice(alphabet) for _ in range(99)) for _ in range(500)]
    source = tmp_path / "binary.dat"
    source.write_bytes(b"".join(r + b"\n" for r in records))
    run_inline(SortBinary(), [source], tmp_path / "out", split_size=4000)
    output = (tmp_path / "out" / "part-00000").read_bytes()
    expected = b"".join(r[:10] + b"\t" + r[10:] + b"\n" for r in sorted(records, key=lambda r: r[:10]))
    assert output == expected, "the output is the input sorted, byte for byte (nothing grew)"


class MostUsedWord(MRJob):
    """mrjob's MRMostUsedWord idiom: the second step sends everything to one key, None."""

    def steps(self) -> list[MRStep]:
        return [MRStep(mapper=self.words, combiner=self.count, reducer=self.count_to_none),
                MRStep(reducer=self.pick)]

    def words(self, _, line):  # type: ignore[no-untyped-def]
        for word in line.split():
            yield word.lower(), 1

    def count(self, word, counts):  # type: ignore[no-untyped-def]
        yield word, sum(counts)

    def count_to_none(self, word, counts):  # type: ignore[no-untyped-def]
        yield None, (sum(counts), word)

    def pick(self, _, pairs):  # type: ignore[no-untyped-def]
        yield max(pairs)


def test_yield_none_as_a_key_works(tmp_path: Path) -> None:
    source = tmp_path / "words.txt"
    source.write_text("the cat and the hat\nthe end\n" * 30)
    run_inline(MostUsedWord(), [source], tmp_path / "out", num_reducers=3, split_size=200)
    assert read_json_parts(tmp_path / "out") == [(90, "the")]


class Mixed(MRJob):
    def mapper(self, _, line):  # type: ignore[no-untyped-def]
        for key in (None, 3, "a", b"b", (1, "x"), 2.5, True, "0"):
            yield key, 1

    def reducer(self, key, ones):  # type: ignore[no-untyped-def]
        yield repr(key), sum(ones)


def test_keys_of_mixed_types_sort_by_one_total_order(tmp_path: Path) -> None:
    source = tmp_path / "two.txt"
    source.write_text("one\ntwo\n")
    run_inline(Mixed(), [source], tmp_path / "out", num_reducers=1)
    text = (tmp_path / "out" / "part-00000").read_text().splitlines()
    got = [(json.loads(k), json.loads(v)) for k, v in (line.split("\t") for line in text)]
    # True == 1 compare equal as numbers; tuples come back as tuples
    assert [k for k, _ in got] == ["None", "True", "2.5", "3", "'0'", "'a'", "b'b'", "(1, 'x')"]
    assert all(v == 2 for _, v in got)


def test_the_total_order_agrees_with_the_natural_one() -> None:
    for same_type in ([3, -1, 2.5, 0], ["b", "a", "ab"], [b"z", b"a"], [(1, "b"), (1, "a"), (0, "z", 1)]):
        assert sorted(same_type) == sorted(same_type, key=total_order)


class Huge(MRJob):
    def mapper(self, _, line):  # type: ignore[no-untyped-def]
        yield "big", 2 ** 70


class ReturnsPair(MRJob):
    def mapper(self, _, line):  # type: ignore[no-untyped-def]
        yield line, 1

    def reducer(self, key, values):  # type: ignore[no-untyped-def]
        return key, sum(values)


class ReturnsNothing(MRJob):
    def mapper(self, _, line):  # type: ignore[no-untyped-def]
        print(line)


class ReturnsNoneLater(MRJob):
    def mapper(self, _, line):  # type: ignore[no-untyped-def]
        if line == "x":
            return [(line, 1)]
        print(line)


class ReturnsList(MRJob):
    def mapper(self, _, line):  # type: ignore[no-untyped-def]
        return [(line, 1), (line.upper(), 2)]


@pytest.mark.parametrize(("job", "complaint"), [
    (Huge(), "an integer in it is too large: records carry integers from -2**63 to 2**64-1"),
    (ReturnsPair(), "the reducer reducer() returned one pair ('x', 1) instead of yielding it"),
    (ReturnsNothing(), "the mapper mapper() returned None: it must yield (key, value) pairs"),
    (ReturnsNoneLater(), "a mapper returned something that is not (key, value) pairs"),
])
def test_clear_errors_for_what_cannot_work(tmp_path: Path, job: MRJob, complaint: str) -> None:
    source = tmp_path / "x.txt"
    source.write_text("x\ny\n")
    with pytest.raises((ShuffleError, TypeError)) as raised:
        run_inline(job, [source], tmp_path / "out")
    assert complaint in str(raised.value)


def test_a_mapper_may_return_a_list_of_pairs(tmp_path: Path) -> None:
    source = tmp_path / "x.txt"
    source.write_text("x\n")
    run_inline(ReturnsList(), [source], tmp_path / "out")
    assert sorted(read_json_parts(tmp_path / "out")) == [("X", 2), ("x", 1)]


class BadEncoding(MRJob):
    INPUT_ENCODING = "no-such-codec"


def test_an_unknown_encoding_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadRequestError, match="INPUT_ENCODING 'no-such-codec'"):
        run_inline(BadEncoding(), [tmp_path], tmp_path / "out")


def test_an_input_that_is_not_a_regular_file_is_refused_not_skipped(tmp_path: Path) -> None:
    import os

    from dynamr.mapreduce.inputs import expand_inputs

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    (folder / "broken.txt").symlink_to(tmp_path / "nowhere")
    with pytest.raises(BadRequestError, match=r"broken\.txt is not a regular file"):
        expand_inputs([folder])
    (folder / "broken.txt").unlink()
    os.mkfifo(folder / "pipe")
    with pytest.raises(BadRequestError, match="pipe is not a regular file"):
        expand_inputs([folder])
