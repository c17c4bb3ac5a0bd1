from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.mapreduce.splits import Split, plan_splits, read_lines, text_records


class BytesSource:
    def __init__(self, data: bytes, block: int) -> None:
        self.data, self.block = data, block

    def read(self, offset: int, length: int) -> Iterator[bytes]:
        end = min(len(self.data), offset + length)
        for i in range(offset, end, self.block):
            yield self.data[i:min(end, i + self.block)]


def expected_lines(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    for line in data.split(b"\n"):
        out.append((pos, line))
        pos += len(line) + 1
    if data.endswith(b"\n") or not data:
        out.pop()  # no line after a final newline
    return out


@settings(max_examples=500)
@given(data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\n\n", b"xyz ", b"\xc3\xa9"]), max_size=60).map(b"".join),
       split_size=st.integers(1, 40), block=st.integers(1, 17))
def test_every_line_is_read_exactly_once(data: bytes, split_size: int, block: int) -> None:
    source = BytesSource(data, block)
    got = [line for split in plan_splits([("f", len(data))], split_size) for line in read_lines(source, split)]
    assert got == expected_lines(data)


def test_splits_are_even_and_cover_the_file() -> None:
    splits = plan_splits([("a", 100), ("b", 7), ("c", 0)], 30)
    assert [(s.path, s.start, s.end) for s in splits] == [
        ("a", 0, 25), ("a", 25, 50), ("a", 50, 75), ("a", 75, 100), ("b", 0, 7), ("c", 0, 0)]
    assert [s.index for s in splits] == list(range(6))
    assert len(plan_splits([("a", 100)], 30, whole_files=True)) == 1


def test_text_records_strip_carriage_returns_and_decode() -> None:
    data = "one\r\ntwo é\nthree".encode()
    split = Split(index=0, path="f", start=0, end=len(data), file_size=len(data))
    assert list(text_records(BytesSource(data, 4), split)) == [(0, "one"), (5, "two é"), (12, "three")]


@settings(max_examples=500)
@given(data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r\n", b"xyz ", b"\xc3\xa9", b"\xff"]),
                     max_size=60).map(b"".join),
       split_size=st.integers(1, 40), block=st.integers(1, 17))
def test_text_records_are_the_lines_decoded_with_their_byte_offsets(data: bytes, split_size: int,
                                                                     block: int) -> None:
    source = BytesSource(data, block)
    got = [record for split in plan_splits([("f", len(data))], split_size)
           for record in text_records(source, split)]
    want = [(offset, line.decode("utf-8", "replace").removesuffix("\r")) for offset, line in expected_lines(data)]
    assert got == want
