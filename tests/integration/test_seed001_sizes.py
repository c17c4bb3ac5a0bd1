"""Seed 001's correctness experiment: 10 files each of about 0.5, 1, 10 and 25 MB (that system failed
above 20 MB), word count and inverted index on the embedded cluster, diffed against sequential output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.mrdata import EXAMPLES, read_json_parts, write_sized_files

WORD = re.compile(r"[a-z0-9']+")
MB = 1_000_000


@pytest.mark.timeout(900)  # 250 MB through two jobs: about 50 s on an idle 2-core machine, far more when loaded
@pytest.mark.parametrize("size", [MB // 2, MB, 10 * MB, 25 * MB], ids=["0.5MB", "1MB", "10MB", "25MB"])
def test_word_count_and_inverted_index_at_every_size(tmp_path: Path, size: int) -> None:
    files = write_sized_files(tmp_path / "in", 10, size)
    counts: Counter[str] = Counter()
    index: dict[str, set[str]] = defaultdict(set)
    for f in files:
        for line in f.read_text().splitlines():
            found = WORD.findall(line.lower())
            counts.update(found)
            for word in found:
                index[word].add(f.name)
    for example, out, reducers in (("wordcount", "wc", "3"), ("inverted_index", "ii", "2")):
        result = subprocess.run(
            [sys.executable, "-m", "dynamr", "run", str(EXAMPLES / f"{example}.py"), str(tmp_path / "in"),
             "-o", str(tmp_path / out), "-r", reducers, "--split-size", "8M"],
            capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
        assert result.returncode == 0, result.stderr
    assert dict(read_json_parts(tmp_path / "wc")) == dict(counts)
    assert dict(read_json_parts(tmp_path / "ii")) == {w: sorted(d) for w, d in index.items()}
