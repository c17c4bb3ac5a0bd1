"""Compressed files (dynamr.mapreduce.compressed): inputs known by name, one split, read as their uncompressed
lines; part files written compressed."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dynamr.errors import BadRequestError, QuorumError
from dynamr.mapreduce.api import MRJob, check_formats
from dynamr.mapreduce.compressed import (
    CompressedInputError,
    Decompressed,
    codec_of,
    compressed_blocks,
    unsplittable_note,
)
from dynamr.mapreduce.inline import run_inline
from dynamr.mapreduce.splits import (
    LocalFile,
    Split,
    bytes_records,
    json_records,
    plan_splits,
    text_chunks,
    text_records,
    whole_file_records,
)

#: more than a decompression block (1 MB), lines of uneven length, one without its newline at the end
TEXT = b"".join(b"line %d %s\n" % (i, b"x" * (i % 50)) for i in range(40_000)) + b"last"
COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "a.gz": lambda d: gzip.compress(d[:300_000]) + gzip.compress(d[300_000:]),  # two members, as `cat` makes
    "a.bz2": lambda d: bz2.compress(d[:5]) + bz2.compress(d[5:]),  # two streams, as pbzip2 makes
    "a.xz": lzma.compress,
}


def _file(tmp_path: Path, name: str, data: bytes) -> tuple[LocalFile, Split]:
    path = tmp_path / name
    path.write_bytes(data)
    (split,) = plan_splits([(str(path), len(data))], 1000)
    return LocalFile(path), split


def _expected_records() -> list[tuple[int, str]]:
    out, offset = [], 0
    for line in TEXT.split(b"\n"):
        out.append((offset, line.decode()))
        offset += len(line) + 1
    return out


def test_codecs_are_known_by_the_file_name_in_any_case() -> None:
    assert [codec_of(p) for p in ("/in/a.gz", "b.BZ2", "c.tar.xz", "d.txt", "e", "gz", "/x.gz/f")] == [
        "gzip", "bzip2", "xz", None, None, None, None]


@pytest.mark.parametrize("name", sorted(COMPRESS))
def test_a_compressed_file_is_one_split_read_as_its_uncompressed_lines(tmp_path: Path, name: str) -> None:
    source, split = _file(tmp_path, name, COMPRESS[name](TEXT))
    assert split.start == 0 and split.end == split.file_size  # one split, however small the split size
    assert list(text_records(source, split)) == _expected_records()  # offsets count uncompressed bytes
    assert [line for _, line in bytes_records(source, split)] == TEXT.split(b"\n")
    assert "".join(text_chunks(source, split)) == TEXT.decode()
    assert list(whole_file_records(source, split)) == [(split.path, Path(split.path).read_bytes())]  # as stored


def test_json_lines_and_offsets_without_keys(tmp_path: Path) -> None:
    data = b"".join(json.dumps({"n": i}).encode() + b"\n" for i in range(1000))
    source, split = _file(tmp_path, "rows.json.gz", gzip.compress(data))
    assert [value["n"] for _, value in json_records(source, split)] == list(range(1000))
    assert [key for key, _ in text_records(source, split, offsets=False)] == [None] * 1000


def test_a_piece_of_a_compressed_file_owns_no_line(tmp_path: Path) -> None:
    # plans are made whole for compressed files; a piece that starts later (a plan made otherwise) reads nothing,
    # so no line is read twice
    source, split = _file(tmp_path, "a.gz", gzip.compress(TEXT))
    later = Split(index=1, path=split.path, start=10, end=split.file_size, file_size=split.file_size)
    assert list(text_records(source, later)) == []


@pytest.mark.parametrize(("name", "data", "says"), [
    ("notes.txt.gz", b"plain text\n", "not valid gzip data"),
    ("notes.bz2", b"BZh9 plain text\n", "not valid bzip2 data"),
    ("notes.xz", b"plain text\n", "not valid xz data"),
    ("cut.gz", gzip.compress(TEXT)[:4000], "the gzip data ends early (a file cut short?)"),
    ("cut.xz", lzma.compress(TEXT)[:4000], "the xz data ends early (a file cut short?)"),
    ("tail.gz", gzip.compress(b"a\n") + b"junk after it", "not valid gzip data"),
])
def test_data_that_is_not_what_the_name_says_is_one_clear_error(tmp_path: Path, name: str, data: bytes,
                                                                says: str) -> None:
    source, split = _file(tmp_path, name, data)
    with pytest.raises(CompressedInputError, match=r"^.*/" + re.escape(f"{name}: {says}")) as caught:
        list(text_records(source, split))
    assert "\n" not in str(caught.value)


def test_an_empty_file_has_no_lines(tmp_path: Path) -> None:
    source, split = _file(tmp_path, "empty.gz", b"")
    assert list(text_records(source, split)) == []


def test_the_head_of_a_stream_read_as_a_sample(tmp_path: Path) -> None:
    head = gzip.compress(TEXT)[:20_000]
    source, _ = _file(tmp_path, "a.gz", head)
    sample = Decompressed(source, "gzip", len(head), "a.gz", truncated_ok=True)
    split = Split(index=0, path="a.gz", start=0, end=len(head), file_size=len(head))
    records = list(text_records(sample, split))
    assert len(records) > 1000 and records[:-1] == _expected_records()[:len(records) - 1]


def test_reading_again_from_an_earlier_offset_starts_the_stream_again(tmp_path: Path) -> None:
    source, split = _file(tmp_path, "a.xz", lzma.compress(TEXT))
    stream = Decompressed(source, "xz", split.file_size, split.path)
    assert b"".join(stream.read(0, 100)) == TEXT[:100]
    assert b"".join(stream.read(100, 50)) == TEXT[100:150]
    assert b"".join(stream.read(10, 20)) == TEXT[10:30]
    assert b"".join(stream.read(len(TEXT), 10)) == b""


def test_a_note_when_compressed_inputs_hold_more_than_a_split() -> None:
    assert unsplittable_note([("/in/a.gz", 1000), ("/in/b.txt", 10**9)], 1000) is None
    note = unsplittable_note([("/in/a.gz", 5_000_000), ("/in/b.xz", 9_000_000), ("/in/c.txt", 10**9)], 1000)
    assert note is not None and note.startswith("/in/b.xz (9.0 MB) and 1 more is compressed and is read whole by "
                                                "one task (its xz stream cannot be cut)")


@pytest.mark.parametrize(("codec", "decompress"), [("gzip", gzip.decompress), ("bzip2", bz2.decompress),
                                                   ("xz", lzma.decompress)])
def test_blocks_compressed_as_one_stream(codec: str, decompress: Callable[[bytes], bytes]) -> None:
    blocks = [TEXT[i:i + 70_000] for i in range(0, len(TEXT), 70_000)]
    assert decompress(b"".join(compressed_blocks(blocks, codec))) == TEXT
    assert decompress(b"".join(compressed_blocks([], codec))) == b""


class Count(MRJob):
    OUTPUT_COMPRESSION = "gzip"

    def mapper(self, _: object, line: str) -> object:
        for word in line.split():
            yield word, 1

    def reducer(self, word: str, ones: object) -> object:
        yield word, sum(ones)  # type: ignore[call-overload]


def test_the_inline_runner_writes_compressed_parts_and_reads_them_back(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("b a b\nc b\n")
    run_inline(Count(), [tmp_path / "in.txt"], tmp_path / "out", num_reducers=2)
    parts = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert parts == ["_SUCCESS", "part-00000.gz", "part-00001.gz"]
    text = b"".join(gzip.decompress((tmp_path / "out" / p).read_bytes()) for p in parts[1:]).decode()
    assert sorted(text.splitlines()) == ['"a"\t1', '"b"\t3', '"c"\t1']
    run_inline(Count(), [tmp_path / "out"], tmp_path / "again", num_reducers=1)  # .gz parts read as their lines
    again = gzip.decompress((tmp_path / "again" / "part-00000.gz").read_bytes()).decode()
    counts = {json.loads(key): json.loads(value) for key, value in (line.split("\t") for line in again.splitlines())}
    assert counts == {'"a"': 1, '"b"': 1, '"c"': 1, "1": 2, "3": 1}  # the words of the first output's lines


@pytest.mark.parametrize(("codec", "fmt", "says"), [
    ("zip", "json", "OUTPUT_COMPRESSION must be one of gzip, bzip2, xz or None (got 'zip')"),
    ("gzip", "records", "OUTPUT_COMPRESSION applies to json and text output"),
])
def test_an_output_compression_that_cannot_be_is_refused(codec: str, fmt: str, says: str) -> None:
    job = type("Job", (Count,), {"OUTPUT_COMPRESSION": codec, "OUTPUT_FORMAT": fmt})()
    with pytest.raises(BadRequestError, match=re.escape(says)):
        check_formats(job)


class Failing:
    """A source that fails after its first block, as a store outage or a disk error would."""

    def __init__(self, data: bytes, error: Exception) -> None:
        self.data, self.error = data, error

    def read(self, offset: int, length: int) -> Iterator[bytes]:
        yield self.data[:1000]
        raise self.error


@pytest.mark.parametrize("error", [QuorumError("read: 1 of 2 replicas"), OSError(5, "Input/output error")])
def test_a_failure_of_the_source_is_not_taken_for_bad_data(error: Exception) -> None:
    data = gzip.compress(TEXT)
    split = Split(index=0, path="/in/a.gz", start=0, end=len(data), file_size=len(data))
    with pytest.raises(type(error)) as caught:
        list(text_records(Failing(data, error), split))
    assert caught.value is error  # as it was raised: a store outage is retried, not counted against the task
