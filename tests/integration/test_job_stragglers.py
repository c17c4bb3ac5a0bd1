"""Slow and stuck tasks, bad nodes, nodes that join (issue 5), with real processes on loopback.

A task is made slow or stuck by user code: its *first* attempt (whichever node runs it) sleeps, found by
creating a marker file with O_EXCL, so a later attempt of the same task runs normally.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.helpers import dynamr, wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import alive, job_status, store_output, submit, upload, wait_for_job, wordcount
from tests.mrdata import write_corpus

#: word count whose first attempt at the file holding "STRAGGLE" sleeps ``{seconds}`` after its input (every
#: other map ``{per_map}``)
FIRST_ATTEMPT_SLEEPS = '''
import os, re, time
from pathlib import Path
from dynamr.mapreduce import MRJob

WORD = re.compile(r"[a-z0-9']+")

class FirstAttemptSleeps(MRJob):
    COMBINE_INPUTS = False  # a task per file: the test places its behaviour by file
    def mapper_init(self):
        self.straggles = False
    def mapper(self, key, line):
        if "STRAGGLE" in line:
            try:
                os.close(os.open(self.options["marker"], os.O_CREAT | os.O_EXCL))
                Path(self.options["marker"]).write_text(str(os.getpid()))
                self.straggles = True
            except FileExistsError:
                pass
        for word in WORD.findall(line.lower()):
            yield word, 1
    def mapper_final(self):
        time.sleep({seconds} if self.straggles else {per_map})
        return ()
    def combiner(self, word, counts):
        yield word, sum(counts)
    def reducer(self, word, counts):
        yield word, sum(counts)
'''


def straggling_job(cluster: Any, tmp_path: Path, name: str, seconds: float, files: int = 12,
                   per_map: float = 0.0) -> tuple[list[Path], Path]:
    inputs = write_corpus(tmp_path / "in", [3000] * files)
    with inputs[5].open("a") as f:
        f.write("\nSTRAGGLE here\n")
    upload(cluster, inputs[0].parent)
    job_file = tmp_path / "straggle.py"
    job_file.write_text(FIRST_ATTEMPT_SLEEPS.format(seconds=seconds, per_map=per_map))
    marker = tmp_path / "first-attempt"
    submit(cluster, name, job_file, ["/in"], "/out", reducers=2, split_size=1 << 20, options={"marker": str(marker)})
    return inputs, marker


def test_a_straggler_gets_a_backup_on_another_node_and_the_first_commit_wins(make_cluster: MakeCluster,
                                                                            tmp_path: Path) -> None:
    cluster = make_cluster(2, n=2, r=1, w=2, task_slots=2, speculative_after=1.0)
    files, marker = straggling_job(cluster, tmp_path, "straggle", seconds=120)
    started = time.monotonic()
    status = wait_for_job(cluster, "straggle", 60)
    assert status.state == "succeeded", status.error
    assert time.monotonic() - started < 60, "the backup, not the sleeping attempt, finished the task"
    assert store_output(cluster, "/out") == wordcount(files)
    backups = [a for a in status.attempts if a.speculative]
    assert status.speculative_attempts == 1 and len(backups) == 1 and backups[0].ok, status.attempts
    task = backups[0].task
    (original,) = [a for a in status.attempts if a.task == task and not a.speculative]
    assert original.node != backups[0].node
    assert not original.ok and "killed at the coordinator's request" in original.error
    sleeper = int(marker.read_text())
    wait_until(lambda: not alive(sleeper), 10, "the losing attempt's process to be killed")
    shown = dynamr("status", "straggle", "--dir", str(cluster.root), cwd=tmp_path).stdout
    assert "(backup)" in shown and "1 backup attempt(s)" in shown


def test_without_slow_tasks_no_backup_starts_and_each_task_runs_once(make_cluster: MakeCluster,
                                                                    tmp_path: Path) -> None:
    cluster = make_cluster(2, n=2, r=1, w=2, task_slots=2, speculative_after=3.0)
    files, _ = straggling_job(cluster, tmp_path, "steady", seconds=0)
    status = wait_for_job(cluster, "steady", 60)
    assert status.state == "succeeded", status.error
    assert store_output(cluster, "/out") == wordcount(files)
    assert status.speculative_attempts == 0
    tasks = [a.task for a in status.attempts]
    assert len(tasks) == len(set(tasks)) == status.maps + status.reduces


def test_a_task_without_progress_is_killed_and_retried(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(2, n=2, r=1, w=2, task_slots=2, task_timeout=3.0, speculative_execution=False)
    files, marker = straggling_job(cluster, tmp_path, "stuck", seconds=300)
    status = wait_for_job(cluster, "stuck", 60)
    assert status.state == "succeeded", status.error
    assert store_output(cluster, "/out") == wordcount(files)
    (timed_out,) = [a for a in status.attempts if not a.ok]
    assert "no progress for 3 s" in timed_out.error
    assert sum(1 for a in status.attempts if a.task == timed_out.task and a.ok) == 1
    assert not alive(int(marker.read_text()))


#: fails every map on the node whose process id is in the file named by option "bad_node"
FAILS_ON_ONE_NODE = '''
import os, re
from pathlib import Path
from dynamr.mapreduce import MRJob

WORD = re.compile(r"[a-z0-9']+")

def ancestors():
    """The process ids above this one (the node is the parent, or the parent of the node's zygote)."""
    pid = os.getpid()
    while pid > 1:
        with open(f"/proc/{pid}/stat", "rb") as f:
            pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        yield str(pid)

class FailsOnOneNode(MRJob):
    COMBINE_INPUTS = False  # a task per file: the test places its behaviour by file
    def mapper_init(self):
        if Path(self.options["bad_node"]).read_text() in ancestors():
            raise OSError("this node's disk is broken")
    def mapper(self, key, line):
        for word in WORD.findall(line.lower()):
            yield word, 1
    def reducer(self, word, counts):
        yield word, sum(counts)
'''


def test_a_node_that_keeps_failing_a_job_is_excluded_from_it(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(2, n=2, r=1, w=2, task_slots=1, node_exclusion_failures=3, max_attempts=4)
    files = write_corpus(tmp_path / "in", [3000] * 12)
    upload(cluster, files[0].parent)
    bad = tmp_path / "bad-node"
    bad.write_text(str(cluster.pid("n1")))
    job_file = tmp_path / "fails.py"
    job_file.write_text(FAILS_ON_ONE_NODE)
    submit(cluster, "flaky-node", job_file, ["/in"], "/out", reducers=2, split_size=1 << 20,
           options={"bad_node": str(bad)})
    status = wait_for_job(cluster, "flaky-node", 90)
    assert status.state == "succeeded", status.error
    assert store_output(cluster, "/out") == wordcount(files)
    on_bad = [a for a in status.attempts if a.node == "n1" and "-m" in a.task]
    assert [a.ok for a in on_bad] == [False] * 3, "n1 got no map after its third failure"
    assert status.excluded_nodes == ("n1",)
    assert "excluded from this job" in dynamr("status", "flaky-node", "--dir", str(cluster.root), cwd=tmp_path).stdout


def test_a_node_that_joins_during_a_job_gets_work(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3, n=3, r=2, w=2, task_slots=1)
    cluster.stop_node("n3")
    files, _ = straggling_job(cluster, tmp_path, "joining", seconds=0, files=30, per_map=0.4)
    wait_until(lambda: job_status(cluster, "joining").maps_done >= 2, 60, "the job to be under way")
    cluster.start_node("n3")
    status = wait_for_job(cluster, "joining", 120)
    assert status.state == "succeeded", status.error
    assert store_output(cluster, "/out") == wordcount(files)
    assert any(a.node == "n3" and a.ok for a in status.attempts), "the new node ran tasks"
