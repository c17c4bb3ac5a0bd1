"""The crash test in the style of MIT 6.5840's Lab 1: user code kills its own node from inside map and reduce
calls, and a loop restarts every node that died, until the job ends.

A task process is a child of its node process, or of the node's zygote (which is the node's child), so
killing that node process from a mapper is a real crash of the whole node: its store member, its worker and
every task it runs (they die with it). The store keeps the node's data on disk; the coordinator has to
notice the lost attempts (a new incarnation or silence), re-run them, and still produce the sequential
output. Shared by the test suite (a few runs) and ``bench/crash_bench.py`` (many runs).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from dynamr.localcluster import LocalCluster
from tests.integration.jobtools import keys_of, store_output, submit, upload, wait_for_job, wordcount
from tests.mrdata import write_corpus

CRASHING_WORDCOUNT = '''
import os, random, re, signal, time
from dynamr.mapreduce import MRJob

WORD = re.compile(r"[a-z0-9']+")
CRASH = {crash}
FIRST = {first!r}  # the first call to create this file crashes for sure: every run tests a crash


def first_call():
    try:
        os.close(os.open(FIRST, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def node_pid():
    """The node process: this task process's parent, or its parent's when that is the node's zygote."""
    parent = os.getppid()
    with open(f"/proc/{{parent}}/cmdline", "rb") as f:
        if b"dynamr.mapreduce.zygote" not in f.read():
            return parent
    with open(f"/proc/{{parent}}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def maybe_crash():
    """Like 6.5840's maybeCrash: kill this node now, or stall a little, or go on."""
    roll = random.random()
    if first_call() or roll < CRASH:
        os.kill(node_pid(), signal.SIGKILL)  # the node process: store member, worker and all its tasks
        time.sleep(10)  # dying with it
    elif roll < 2 * CRASH:
        time.sleep(random.uniform(0.0, 0.5))


class CrashingCount(MRJob):
    def mapper_init(self):
        self.first = True

    def mapper(self, key, line):
        if self.first:
            self.first = False
            maybe_crash()
        for word in WORD.findall(line.lower()):
            yield word, 1

    def reducer_init(self):
        self.first = True

    def reducer(self, word, counts):
        if self.first:
            self.first = False
            maybe_crash()
        yield word, sum(counts)
'''

NODES = ("n1", "n2", "n3")


class Restarter(threading.Thread):
    """Restarts every node that died, until stopped; counts the restarts."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stopped = threading.Event()
        self.restarts = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopped.wait(0.1):
                for node in NODES:
                    if self.cluster.pid(node) is None:
                        self.cluster.start_node(node)
                        self.restarts += 1
        except BaseException as exc:  # reported by the caller
            self.error = exc

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)


def crash_run(cluster: LocalCluster, tmp_path: Path, name: str = "crash", crash: float = 0.2,
              timeout: float = 300.0) -> dict[str, Any]:
    """Run the crashing word count on ``cluster`` (3 nodes); returns what a test checks."""
    files = write_corpus(tmp_path / "in", [6000] * 8, seed=len(name))
    upload(cluster, files[0].parent)
    job_file = tmp_path / "crashing.py"
    job_file.write_text(CRASHING_WORDCOUNT.format(crash=crash, first=str(tmp_path / "crashed-once")))
    restarter = Restarter(cluster)
    restarter.start()
    try:
        submit(cluster, name, job_file, ["/in"], "/out", reducers=3, split_size=3000)
        status = wait_for_job(cluster, name, timeout)
    finally:
        restarter.stop()
    for node in NODES:
        if cluster.pid(node) is None:
            cluster.start_node(node)
    cluster.wait_ready(NODES, 60)
    return {"status": status, "restarts": restarter.restarts, "error": restarter.error,
            "output_ok": status.state == "succeeded" and store_output(cluster, "/out") == wordcount(files),
            "keys": lambda: keys_of(cluster, name)}
