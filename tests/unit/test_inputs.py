"""Which files a job's inputs name (dynamr.mapreduce.inputs): directories, hidden files, glob patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamr.errors import NotFoundError
from dynamr.mapreduce.inputs import expand_inputs, matches


def _tree(root: Path) -> None:
    for name in ("logs/2026-01/a.gz", "logs/2026-01/_SUCCESS", "logs/2026-01/.a.gz.crc", "logs/2026-02/b.gz",
                 "logs/2025-12/c.gz", "logs/notes.txt", "out/part-00000", "out/part-00001", "out/_SUCCESS"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


def test_directories_stand_for_their_files_without_hidden_ones(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in expand_inputs([tmp_path / "out"])] == [
        "out/part-00000", "out/part-00001"]
    assert expand_inputs([tmp_path / "out" / "_SUCCESS"]) == [tmp_path / "out" / "_SUCCESS"]  # named: read


def test_patterns_match_files_and_directories_one_component_at_a_time(tmp_path: Path) -> None:
    _tree(tmp_path)

    def names(pattern: str) -> list[str]:
        return [p.relative_to(tmp_path).as_posix() for p in expand_inputs([tmp_path / pattern])]

    assert names("logs/2026-*") == ["logs/2026-01/a.gz", "logs/2026-02/b.gz"]
    assert names("logs/*/?.gz") == ["logs/2025-12/c.gz", "logs/2026-01/a.gz", "logs/2026-02/b.gz"]
    assert names("out/*") == ["out/part-00000", "out/part-00001"]  # not _SUCCESS
    assert names("out/_*") == ["out/_SUCCESS"]  # asked for
    assert names("logs/*.txt") == ["logs/notes.txt"]  # * does not cross a /
    with pytest.raises(NotFoundError, match=r"no input matches .*logs/2024-\*"):
        expand_inputs([tmp_path / "logs/2024-*"])


@pytest.mark.parametrize(("path", "pattern", "expected"), [
    ("/logs/2026-01/a.gz", "/logs/2026-*", True),
    ("/logs/2026-01/_SUCCESS", "/logs/2026-*", False),
    ("/logs/2026-01/a.gz", "/logs/*.gz", False),
    ("/logs/2026-01/a.gz", "/logs/*/*.gz", True),
    ("/logs/2026-01/a.gz", "/logs/2026-0[2-9]", False),
    ("/out/_SUCCESS", "/out/*", False),
    ("/out/_SUCCESS", "/out/_*", True),
    ("/out", "/out/*", False),
])
def test_store_paths_match_as_local_ones_do(path: str, pattern: str, expected: bool) -> None:
    assert matches(path, pattern) is expected
