"""The MapReduce engine end to end: real coordinator, nodes, task processes and store."""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from dynamr.files.client import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.mapreduce.submit import JobClient, build_plan
from dynamr.store.client import AsyncClient
from tests.helpers import dynamr
from tests.integration.conftest import MakeCluster
from tests.mrdata import EXAMPLES, read_json_parts, write_corpus, write_sort_records

WORD = re.compile(r"[a-z0-9']+")
UNEVEN = [3000, 3000, 60000, 3000, 500, 3000]  # one file 20x the others


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"), UNEVEN)


def words(files: list[Path]) -> Counter[str]:
    return Counter(w for f in files for line in f.read_text().splitlines() for w in WORD.findall(line.lower()))


def test_embedded_run_of_word_count_and_inverted_index(corpus: list[Path], tmp_path: Path) -> None:
    folder = corpus[0].parent
    out = dynamr("run", str(EXAMPLES / "wordcount.py"), str(folder), "-o", str(tmp_path / "wc"), "-r", "3",
                 "--split-size", "2K", cwd=tmp_path).stdout
    assert "succeeded" in out
    assert dict(read_json_parts(tmp_path / "wc")) == dict(words(corpus))
    assert sorted(p.name for p in (tmp_path / "wc").iterdir()) == ["_SUCCESS", "part-00000", "part-00001",
                                                                   "part-00002"]
    dynamr("run", str(EXAMPLES / "inverted_index.py"), str(folder), "-o", str(tmp_path / "ii"), "-r", "2",
           "--split-size", "5K", cwd=tmp_path)
    expected: dict[str, set[str]] = defaultdict(set)
    for f in corpus:
        for line in f.read_text().splitlines():
            for w in WORD.findall(line.lower()):
                expected[w].add(f.name)
    assert dict(read_json_parts(tmp_path / "ii")) == {w: sorted(d) for w, d in expected.items()}


def test_embedded_run_of_grep_terasort_and_seed_form(corpus: list[Path], tmp_path: Path) -> None:
    folder = corpus[0].parent
    dynamr("run", str(EXAMPLES / "grep.py"), str(folder), "-o", str(tmp_path / "grep"), "-D",
           r"pattern=\bth[a-z]+\b", "--split-size", "3K", cwd=tmp_path)
    counts = Counter(m for f in corpus for line in f.read_text().splitlines()
                     for m in re.findall(r"\bth[a-z]+\b", line))
    assert read_json_parts(tmp_path / "grep") == sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    records = tmp_path / "records.txt"
    write_sort_records(records, 4000)
    dynamr("run", str(EXAMPLES / "terasort.py"), str(records), "-o", str(tmp_path / "sorted"), "--split-size", "40K",
           cwd=tmp_path)
    lines = [line for p in sorted((tmp_path / "sorted").glob("part-*")) for line in p.read_text().splitlines()]
    assert [line[:10] for line in lines] == sorted(line[:10] for line in records.read_text().splitlines())
    dynamr("run", str(EXAMPLES / "seed_wordcount.py"), str(folder), "-o", str(tmp_path / "seed"), cwd=tmp_path)
    expected: Counter[str] = Counter()
    for f in corpus:
        for word in f.read_text().split():
            word = word.lower().strip(".,;:!?()'\"")
            if word:
                expected[word] += 1
    assert dict(read_json_parts(tmp_path / "seed")) == dict(expected)


async def _run_job(cluster: LocalCluster, name: str, job_file: Path, inputs: list[str], output: str,
                   **kwargs: Any) -> dict[str, Any]:
    async with AsyncClient(cluster.seeds, cluster.secret, timeout=60) as client:
        plan = await build_plan(FileSystem(client), name, job_file, inputs, output, local=False, **kwargs)
        jobs = JobClient(client)
        await jobs.submit(name, plan, Path(job_file).read_bytes())
        return await jobs.wait(name)


def test_work_reaches_idle_workers_at_once_not_a_heartbeat_later(make_cluster: MakeCluster,
                                                                 corpus: list[Path]) -> None:
    """Idle workers' polls wait at the coordinator for the next task: with workers that poll only every 20 s,
    a job sent to a cluster just started, and one sent to workers that have just finished a job, run their
    maps and reduces at once. Without the held polls each waited up to 20 s for a poll."""
    cluster = make_cluster(2, n=2, r=1, w=2, task_slots=2, worker_heartbeat=20.0, worker_timeout=90.0)

    async def upload() -> None:
        async with AsyncClient(cluster.seeds, cluster.secret) as client:
            await FileSystem(client).put_tree(corpus[0].parent, "/in")

    asyncio.run(upload())
    first = asyncio.run(_run_job(cluster, "idle-1", EXAMPLES / "wordcount.py", ["/in"], "/out1", reducers=2))
    assert first.state == "succeeded", first
    assert first.seconds < 10.0, f"the job waited for a heartbeat: {first.seconds:.1f}s"
    second = asyncio.run(_run_job(cluster, "idle-2", EXAMPLES / "wordcount.py", ["/in"], "/out2", reducers=2))
    assert second.state == "succeeded", second
    assert second.seconds < 10.0, f"the job waited for a heartbeat: {second.seconds:.1f}s"


def overlapping(attempts: list[dict[str, Any]], a: str, b: str) -> bool:
    """Some attempt on node a and some attempt on node b ran during a common interval (from task records)."""
    return any(x.node == a and y.node == b and x.started < y.ended and y.started < x.ended
               for x in attempts for y in attempts)


def test_two_nodes_run_maps_and_reduces_at_the_same_time(make_cluster: MakeCluster, corpus: list[Path]) -> None:
    cluster = make_cluster(2, n=2, r=1, w=2, task_slots=2)
    async def upload() -> None:
        async with AsyncClient(cluster.seeds, cluster.secret) as client:
            await FileSystem(client).put_tree(corpus[0].parent, "/in")

    asyncio.run(upload())
    status = asyncio.run(_run_job(cluster, "wc-two", EXAMPLES / "wordcount.py", ["/in"], "/out", reducers=8,
                                  split_size=4000))
    assert status.state == "succeeded", status
    maps = [a for a in status.attempts if "-m" in a.task]
    reduces = [a for a in status.attempts if "-r" in a.task]
    assert overlapping(maps, "n1", "n2"), "map tasks ran on both nodes at the same time"
    assert overlapping(reduces, "n1", "n2"), "reduce tasks ran on both nodes at the same time"
    assert len(maps) == status.maps and len({a.task for a in maps}) == status.maps, \
        "with no failures each map task runs exactly once"
    assert all(a.ok for a in status.attempts)

    async def output() -> dict[str, int]:
        async with AsyncClient(cluster.seeds, cluster.secret) as client:
            fs = FileSystem(client)
            names = [e.name for e in await fs.ls("/out")]
            assert "_SUCCESS" in names
            text = b"".join([await fs.read_bytes(f"/out/{n}") for n in names if n.startswith("part-")]).decode()
            leftovers = await client.get(b"mr:wc-two/commit/wc-two/s0-m0")
            assert not leftovers.found, "intermediate commit records are deleted when the job ends"
            return {k.strip('"'): int(v) for k, v in (line.split("\t") for line in text.splitlines())}

    assert asyncio.run(output()) == dict(words(corpus))


def test_bad_jobs_fail_clearly_and_the_cluster_keeps_serving(corpus: list[Path], tmp_path: Path) -> None:
    folder = str(corpus[0].parent)
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    result = dynamr("run", str(broken), folder, "-o", str(tmp_path / "o1"), cwd=tmp_path, check=False)
    assert result.returncode == 1 and "does not import" in result.stderr and "nonexistent_module_xyz" in result.stderr
    raising = tmp_path / "raising.py"
    raising.write_text("from dynamr.mapreduce import MRJob\n"
                       "class Raising(MRJob):\n"
                       "    def mapper(self, key, line):\n"
                       "        if 'harbour' in line:\n"
                       "            raise KeyError('boom at ' + str(key))\n"
                       "        yield line, 1\n"
                       "    def reducer(self, key, values):\n"
                       "        yield key, sum(values)\n")
    result = dynamr("run", str(raising), folder, "-o", str(tmp_path / "o2"), cwd=tmp_path, check=False)
    assert result.returncode == 1
    said = " ".join(result.stderr.split())
    assert "failed: task" in said and 'raising.py", line 5, in mapper' in said
    assert "KeyError: 'boom at" in said and re.search(r"doc\d\d\.txt bytes \d+-\d+", said) and "node n1" in said
    unencodable = tmp_path / "unencodable.py"
    unencodable.write_text("from dynamr.mapreduce import MRJob\n"
                           "class Sets(MRJob):\n"
                           "    def mapper(self, key, line):\n"
                           "        yield 'k', 1\n"
                           "    def reducer(self, key, values):\n"
                           "        yield key, {1, 2}\n")
    result = dynamr("run", str(unencodable), folder, "-o", str(tmp_path / "o3"), cwd=tmp_path, check=False)
    said = " ".join(result.stderr.split())
    assert result.returncode == 1 and "not JSON serializable" in said and "('k', {1, 2})" in said
    assert "-r0" in said  # the reduce task that produced it


def test_named_jobs_on_a_local_cluster(corpus: list[Path], tmp_path: Path) -> None:
    dynamr("cluster", "up", "--nodes", "2", "-n", "2", cwd=tmp_path)
    try:
        dynamr("fs", "put", str(corpus[0].parent), "/in", cwd=tmp_path)
        created = dynamr("job", "create", "wc1", str(EXAMPLES / "wordcount.py"), "--input", "/in", "--output",
                         "/wc1", "-r", "2", cwd=tmp_path).stdout
        assert "created job wc1" in created
        impostor = tmp_path / "other" / "wordcount.py"  # same file name, other code: must not replace wc1's
        impostor.parent.mkdir()
        impostor.write_text("from dynamr.mapreduce import MRJob\n"
                            "class Shout(MRJob):\n"
                            "    def mapper(self, key, line):\n"
                            "        yield 'SHOUT', 1\n"
                            "    def reducer(self, key, values):\n"
                            "        yield key, sum(values)\n")
        again = dynamr("job", "create", "wc1", str(impostor), "--input", "/in", "--output", "/x",
                       cwd=tmp_path, check=False)
        assert again.returncode == 1 and "already exists" in again.stderr
        negative = dynamr("job", "create", "wc2", str(EXAMPLES / "wordcount.py"), "--input", "/in", "--output",
                          "/wc2", "-r", "-1", cwd=tmp_path, check=False)
        assert negative.returncode == 2 and "'-r' / '--reducers': -1 is not in the range x>=0" in negative.stderr
        assert "Traceback" not in negative.stderr  # a usage error, caught by the option's type
        assert "succeeded" in dynamr("job", "run", "wc1", cwd=tmp_path).stdout
        dynamr("fs", "get", "/wc1", str(tmp_path / "wc1-out"), cwd=tmp_path)
        assert dict(read_json_parts(tmp_path / "wc1-out")) == dict(words(corpus))  # wc1's own code ran
        assert "wc2" not in dynamr("fs", "ls", "/_jobs", cwd=tmp_path).stdout  # a refused job uploaded nothing
        assert "succeeded" in dynamr("status", "wc1", cwd=tmp_path).stdout
        assert "wc1" in dynamr("jobs", cwd=tmp_path).stdout
        out = dynamr("run", str(EXAMPLES / "wordcount.py"), str(corpus[0].parent), "-o", str(tmp_path / "local-out"),
                     "--local-cluster", cwd=tmp_path).stdout
        assert "succeeded" in out
        assert dict(read_json_parts(tmp_path / "local-out")) == dict(words(corpus))
    finally:
        dynamr("cluster", "down", cwd=tmp_path, check=False)


def test_the_readme_main_command_runs_twice_and_overwrite_is_careful(tmp_path: Path) -> None:
    root = EXAMPLES.parent
    for _ in range(2):
        out = dynamr("run", "examples/wordcount.py", "src/dynamr/sample_data", "-o", str(tmp_path / "wc"),
                     "--overwrite", cwd=root).stdout
        assert "succeeded" in out
    counts = dict(read_json_parts(tmp_path / "wc"))
    sample = " ".join(p.read_text() for p in sorted((root / "src" / "dynamr" / "sample_data").glob("*.txt")))
    assert counts == dict(Counter(WORD.findall(sample.lower())))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    refused = dynamr("run", "examples/wordcount.py", "src/dynamr/sample_data", "-o", str(tmp_path / "mine"),
                     "--overwrite", cwd=root, check=False)
    assert refused.returncode == 1 and "not job output" in " ".join(refused.stderr.split())
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
