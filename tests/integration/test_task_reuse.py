"""Task processes are reused for attempts of one job (up to task_process_reuse), never across jobs."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import store_output, submit, upload, wait_for_job
from tests.mrdata import write_corpus

#: counts the map tasks each task process ran (key: the process id)
PIDS = '''
import os
from dynamr.mapreduce import MRJob

class Pids(MRJob):
    COMBINE_INPUTS = False  # a task per file: the test places its behaviour by file
    def mapper_final(self):
        yield str(os.getpid()), 1
    def mapper(self, key, line):
        return ()
    def reducer(self, pid, counts):
        yield pid, sum(counts)
'''


def test_a_task_process_runs_several_attempts_of_one_job_and_no_other_job(make_cluster: MakeCluster,
                                                                          tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=2, task_process_reuse=5)
    files = write_corpus(tmp_path / "in", [2000] * 16)
    upload(cluster, files[0].parent)
    job_file = tmp_path / "pids.py"
    job_file.write_text(PIDS)
    submit(cluster, "pids-1", job_file, ["/in"], "/out1", reducers=1, split_size=1 << 20)
    assert wait_for_job(cluster, "pids-1", 60).state == "succeeded"
    first = store_output(cluster, "/out1")
    assert sum(first.values()) == 16, "every map task counted once"
    assert max(first.values()) <= 5, "no process runs more than task_process_reuse attempts"
    assert len(first) < 16, f"processes were reused: {first}"

    submit(cluster, "pids-2", job_file, ["/in"], "/out2", reducers=1, split_size=1 << 20)
    assert wait_for_job(cluster, "pids-2", 60).state == "succeeded"
    second = store_output(cluster, "/out2")
    assert sum(second.values()) == 16
    assert not set(first) & set(second), "a process that served one job never serves another"


#: each map attempt leaves a file "<pid>-<time>-<what>" behind; one map grows the process past 128 MiB,
#: and the first attempt of another fails
RETIRING = '''
import os, time
from pathlib import Path
from dynamr.mapreduce import MRJob

class Retiring(MRJob):
    COMBINE_INPUTS = False  # a task per file: the test places its behaviour by file
    def mapper_init(self):
        self.log = Path(self.options["log"])
        what = "ok"
        if self.input_path.endswith("doc01.txt"):
            self.ballast = bytearray(200 << 20)
            self.ballast[::4096] = b"x" * len(self.ballast[::4096])  # touch every page: resident
            what = "big"
        elif self.input_path.endswith("doc07.txt"):
            try:
                os.close(os.open(self.log / "failed-once", os.O_CREAT | os.O_EXCL))
                what = "fail"
            except FileExistsError:
                pass
        (self.log / f"{os.getpid()}-{time.monotonic_ns()}-{what}").write_text("")
        if what == "fail":
            raise RuntimeError("the first attempt of doc07 fails")
    def mapper(self, key, line):
        return ()
    def mapper_final(self):
        time.sleep(0.2)  # slow enough that either slot gets several maps
        yield "maps", 1
    def reducer(self, key, counts):
        yield key, sum(counts)
'''


def test_a_task_process_retires_after_a_failure_and_above_its_memory_cap(make_cluster: MakeCluster,
                                                                          tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=2, task_process_reuse=20,
                           task_process_max_rss=128 << 20)
    files = write_corpus(tmp_path / "in", [2000] * 12)
    upload(cluster, files[0].parent)
    log = tmp_path / "log"
    log.mkdir()
    job_file = tmp_path / "retiring.py"
    job_file.write_text(RETIRING)
    submit(cluster, "retiring", job_file, ["/in"], "/out", reducers=1, split_size=1 << 20,
           options={"log": str(log)})
    status = wait_for_job(cluster, "retiring", 60)
    assert status.state == "succeeded", status.error
    assert store_output(cluster, "/out") == {"maps": 12}

    runs: dict[str, list[tuple[int, str]]] = {}
    for entry in log.glob("*-*-*"):
        pid, at, what = entry.name.split("-")
        runs.setdefault(pid, []).append((int(at), what))
    history = {pid: [what for _, what in sorted(attempts)] for pid, attempts in runs.items()}
    assert sorted(w for h in history.values() for w in h) == sorted(["ok"] * 11 + ["big", "fail"])
    for marked in ("big", "fail"):
        (holder,) = [h for h in history.values() if marked in h]
        assert holder[-1] == marked, f"the process that ran the {marked!r} attempt ran no other after it: {history}"
    assert any(len(h) > 1 for h in history.values()), f"other processes were reused: {history}"
