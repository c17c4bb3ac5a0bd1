from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.errors import BadRequestError
from dynamr.files import directory, paths
from dynamr.files.manifest import Manifest, resolve


def test_paths_normalize_and_reject() -> None:
    assert paths.normalize("/a//b/") == "/a/b"
    assert paths.normalize("/") == "/"
    for bad in ("a/b", "/a/../b", "/./a", "/" + "x" * 400):
        with pytest.raises(BadRequestError):
            paths.normalize(bad)
    assert paths.parent("/a/b") == "/a" and paths.parent("/a") == "/"
    assert paths.ancestors("/a/b/c") == ["/", "/a", "/a/b"]


def test_manifest_spans_cover_exactly_the_range() -> None:
    mf = Manifest(size=25, chunk_size=10, chunks=((b"a", 10), (b"b", 10), (b"c", 5)), mtime=0)
    assert mf.spans(0, -1) == [(0, b"a", 0, 10, 0), (1, b"b", 0, 10, 10), (2, b"c", 0, 5, 20)]
    assert mf.spans(8, 4) == [(0, b"a", 8, 2, 8), (1, b"b", 0, 2, 10)]
    assert mf.spans(20, 100) == [(2, b"c", 0, 5, 20)]
    assert mf.spans(25, 10) == []
    assert Manifest(size=0, chunk_size=10, chunks=(), mtime=0).spans(0, -1) == []


def test_manifest_encoding_and_last_writer_wins() -> None:
    old = Manifest(size=1, chunk_size=4, chunks=((b"x" * 16, 1),), mtime=1.0)
    new = Manifest(size=2, chunk_size=4, chunks=((b"y" * 16, 2),), mtime=2.0)
    assert Manifest.decode(old.encode()) == old
    assert resolve([old.encode(), new.encode()]) == new
    assert resolve([]) is None


def test_concurrent_creates_both_survive_and_removal_sticks() -> None:
    base: directory.Entries = {}
    directory.add(base, "shared", directory.FILE)
    a = directory.decode(directory.encode(base))
    b = directory.decode(directory.encode(base))
    directory.add(a, "from-a", directory.FILE)
    directory.add(b, "from-b", directory.DIRECTORY)
    merged = directory.merge([a, b])
    assert directory.live(merged) == {"shared": "f", "from-a": "f", "from-b": "d"}
    directory.remove(merged, "shared")
    # an old sibling that still lists "shared" must not bring it back
    assert "shared" not in directory.live(directory.merge([merged, a, b]))


def test_add_wins_over_a_concurrent_remove() -> None:
    base: directory.Entries = {}
    directory.add(base, "f", directory.FILE)
    remover = directory.decode(directory.encode(base))
    recreator = directory.decode(directory.encode(base))
    directory.remove(remover, "f")
    directory.add(recreator, "f", directory.FILE)
    assert "f" in directory.live(directory.merge([remover, recreator]))


ops = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["add", "remove"]), st.sampled_from("xyz")),
               max_size=20)


@settings(max_examples=200)
@given(ops)
def test_directory_merge_is_order_independent(history: list[tuple[int, str, str]]) -> None:
    replicas: list[directory.Entries] = [{}, {}, {}]
    for i, op, name in history:
        if op == "add":
            directory.add(replicas[i], name, directory.FILE)
        else:
            directory.remove(replicas[i], name)
    one = directory.live(directory.merge(replicas))
    two = directory.live(directory.merge(list(reversed(replicas))))
    assert one == two
