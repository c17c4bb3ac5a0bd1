"""User inputs through real task processes: mrjob's `yield None` idiom, and a warning for undecodable text;
which files store inputs name (hidden files, patterns), and local patterns staged for a cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dynamr.errors import NotFoundError
from dynamr.files.client import FileSystem
from dynamr.mapreduce.inputs import store_inputs
from dynamr.mapreduce.submit import stage_input
from dynamr.store.client import AsyncClient
from tests.helpers import dynamr
from tests.integration.conftest import MakeCluster
from tests.mrdata import read_json_parts

MOST_USED_WORD = '''
from dynamr.mapreduce import MRJob, MRStep

class MostUsedWord(MRJob):
    def steps(self):
        return [MRStep(mapper=self.words, combiner=self.count, reducer=self.count_to_none),
                MRStep(reducer=self.pick)]
    def words(self, _, line):
        for word in line.split():
            yield word.lower(), 1
    def count(self, word, counts):
        yield word, sum(counts)
    def count_to_none(self, word, counts):
        yield None, (sum(counts), word)
    def pick(self, _, pairs):
        yield max(pairs)
'''


def test_most_used_word_with_none_keys_and_latin1_input_in_an_embedded_run(tmp_path: Path) -> None:
    job = tmp_path / "mostused.py"
    job.write_text(MOST_USED_WORD)
    (tmp_path / "a.txt").write_bytes(("the café and the hat\nthe end\n" * 40).encode("latin-1"))
    run = dynamr("run", str(job), str(tmp_path / "a.txt"), "-o", str(tmp_path / "out"), "-r", "2",
                 "--split-size", "300", cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    assert read_json_parts(tmp_path / "out") == [(120, "the")]
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "40 byte(s) of input were not valid" in warnings[0], run.stderr


def test_store_inputs_skip_hidden_files_and_match_patterns_and_local_patterns_are_staged(
        make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3)
    local = tmp_path / "tree"
    for name in ("logs/2026-01/a.gz", "logs/2026-01/_SUCCESS", "logs/2026-01/.a.crc", "logs/2026-02/b.gz",
                 "logs/2025-12/c.gz", "logs/notes.txt"):
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_text(name)

    async def check() -> None:
        async with AsyncClient(cluster.seeds, cluster.secret, timeout=30) as client:
            fs = FileSystem(client)
            await fs.put_tree(local, "/t")

            async def names(*paths: str) -> list[str]:
                return [p for p, _ in await store_inputs(fs, list(paths))]

            assert await names("/t/logs/2026-01") == ["/t/logs/2026-01/a.gz"]  # no _SUCCESS, no .crc
            assert await names("/t/logs/2026-*") == ["/t/logs/2026-01/a.gz", "/t/logs/2026-02/b.gz"]
            assert await names("/t/logs/*/?.gz") == ["/t/logs/2025-12/c.gz", "/t/logs/2026-01/a.gz",
                                                     "/t/logs/2026-02/b.gz"]
            assert await names("/t/logs/2026-01/_SUCCESS") == ["/t/logs/2026-01/_SUCCESS"]  # named: read
            with pytest.raises(NotFoundError, match=r"no input matches /t/logs/2024-\* on the store"):
                await names("/t/logs/2024-*")
            staged = await stage_input(fs, "job1", str(local / "logs" / "*" / "?.gz"))
            found = await store_inputs(fs, [staged])
            assert [p.rsplit("/", 1)[1] for p, _ in found] == ["00000-c.gz", "00001-a.gz", "00002-b.gz"]
            assert [await fs.read_bytes(p) for p, _ in found] == [b"logs/2025-12/c.gz", b"logs/2026-01/a.gz",
                                                                   b"logs/2026-02/b.gz"]

    asyncio.run(check())
