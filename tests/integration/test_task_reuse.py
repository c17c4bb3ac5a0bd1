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
    assert wait_for_job(cluster, "pids-1", 60)["state"] == "succeeded"
    first = store_output(cluster, "/out1")
    assert sum(first.values()) == 16, "every map task counted once"
    assert max(first.values()) <= 5, "no process runs more than task_process_reuse attempts"
    assert len(first) < 16, f"processes were reused: {first}"

    submit(cluster, "pids-2", job_file, ["/in"], "/out2", reducers=1, split_size=1 << 20)
    assert wait_for_job(cluster, "pids-2", 60)["state"] == "succeeded"
    second = store_output(cluster, "/out2")
    assert sum(second.values()) == 16
    assert not set(first) & set(second), "a process that served one job never serves another"
