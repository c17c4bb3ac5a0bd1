"""Chunk garbage collection while jobs run: intermediate data is a root until its job is cleaned up."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from dynamr.client import Client
from dynamr.files.client import FileSystem
from dynamr.localcluster import LocalCluster
from tests.helpers import dynamr, wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import (
    job_status,
    keys_of,
    submit,
    upload,
    wait_for_job,
    wordcount,
)
from tests.mrdata import write_corpus

#: two steps: a slow word count, then the words sorted by count (one reducer); both steps' data in the store
TWO_STEPS = '''
import re, time
from dynamr.mapreduce import MRJob, MRStep

WORD = re.compile(r"[a-z0-9']+")

class CountThenSort(MRJob):
    def words(self, key, line):
        for word in WORD.findall(line.lower()):
            yield word, 1
    def pause(self):
        time.sleep(float(self.options.get("pause", "0.3")))
        return ()
    def hold(self):
        time.sleep(float(self.options.get("hold", "0")))
    def count(self, word, ones):
        yield word, sum(ones)
    def by_count(self, word, count):
        yield (-count, word), None
    def ordered(self, key, _):
        count, word = key
        yield word, -count
    def steps(self):
        return [MRStep(mapper=self.words, mapper_final=self.pause, combiner=self.count, reducer_init=self.hold,
                       reducer=self.count),
                MRStep(mapper=self.by_count, reducer=self.ordered, num_reducers=1)]
'''


def _chunks_on_nodes(cluster: LocalCluster) -> int:
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        statuses = client.node_status()
        return sum(s.chunks for s in statuses.values() if not isinstance(s, Exception))


def _chunks_in_tree(cluster: LocalCluster) -> set[bytes]:
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        async def walk() -> set[bytes]:
            return {cid async for _, mf in FileSystem(client.async_client).walk_manifests() for cid, _ in mf.chunks}

        return client.run(walk())


def test_gc_with_no_grace_during_a_two_step_job_frees_nothing_it_needs(make_cluster: MakeCluster,
                                                                       tmp_path: Path) -> None:
    cluster = make_cluster(3, task_slots=2, speculative_execution=False)
    files = write_corpus(tmp_path / "in", [6000] * 8)
    upload(cluster, files[0].parent)
    job_file = tmp_path / "two.py"
    job_file.write_text(TWO_STEPS)
    submit(cluster, "two", job_file, ["/in"], "/out", reducers=3, split_size=3000)

    rounds: list[int] = []
    stop = threading.Event()

    def collect() -> None:  # as `dynamr fs gc --grace 0` would, over and over while the job runs
        with Client(cluster.seeds, cluster.secret, timeout=30) as client:
            fs = client.files()
            while not stop.is_set():
                rounds.append(fs.collect_garbage(grace=0))

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    try:
        status = wait_for_job(cluster, "two", 240)
    finally:
        stop.set()
        collector.join(60)
    assert status.state == "succeeded", status
    assert len(rounds) >= 3, f"garbage collection ran only {len(rounds)} time(s) during the job"
    tries = Counter(a.task for a in status.attempts)
    assert tries and max(tries.values()) == 1, f"a task ran twice: {tries}"
    expected = wordcount(files)
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        text = client.files().read_bytes("/out/part-00000").decode()
    pairs = [(line.split("\t")[0].strip('"'), int(line.split("\t")[1])) for line in text.splitlines()]
    assert dict(pairs) == expected
    counts = [count for _, count in pairs]
    assert counts == sorted(counts, reverse=True), "the second step sorted by count"


def test_a_killed_jobs_intermediate_chunks_are_freed_after_its_cleanup(make_cluster: MakeCluster,
                                                                      tmp_path: Path) -> None:
    cluster = make_cluster(3, task_slots=2)
    files = write_corpus(tmp_path / "in", [6000] * 4)
    upload(cluster, files[0].parent)
    job_file = tmp_path / "two.py"
    job_file.write_text(TWO_STEPS)
    submit(cluster, "abandoned", job_file, ["/in"], "/out", reducers=3, split_size=3000,
           options={"pause": "0", "hold": "300"})
    wait_until(lambda: job_status(cluster, "abandoned").maps_done >= 4, 120, "the first step's maps to commit")
    assert any(keys_of(cluster, "abandoned").values()), "the maps' outputs are in the store"
    said = dynamr("kill", "abandoned", "--dir", str(cluster.root), cwd=tmp_path, check=False)
    assert said.returncode == 0, said.stderr
    wait_until(lambda: not any(keys_of(cluster, "abandoned").values()), 60, "the job's cleanup")
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        client.files().collect_garbage(grace=0)
    assert _chunks_on_nodes(cluster) == 3 * len(_chunks_in_tree(cluster)), \
        "only the chunks of files (inputs, the job's source) remain"
