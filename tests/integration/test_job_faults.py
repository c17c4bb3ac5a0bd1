"""Jobs that survive (issue 5): kill, retries and skip mode, dead and paused nodes, coordinator restarts.

Real coordinator, node and task processes on loopback; faults are real signals (SIGKILL, SIGSTOP).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dynamr.files.client import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.mapreduce.submit import JobClient, build_plan
from dynamr.store.client import Client
from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.mrdata import write_corpus

UNEVEN = [3000, 3000, 60000, 3000, 500, 3000]

LOOPING_JOB = '''
import os, subprocess
from pathlib import Path
from dynamr.mapreduce import MRJob

class Loops(MRJob):
    def mapper_init(self):
        self.pids = Path(self.options["pids"])
    def mapper(self, key, line):
        if "LOOP" in line:
            helper = subprocess.Popen(["sleep", "300"])
            (self.pids / f"{os.getpid()}-{helper.pid}").write_text("")
            while True:
                pass
        yield line[:3], 1
    def reducer(self, key, values):
        yield key, sum(values)
'''


def dynamr(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "dynamr", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "COLUMNS": "200"})
    if check:
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def submit(cluster: LocalCluster, name: str, job_file: Path, inputs: list[str], output: str,
           **kwargs: Any) -> None:
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        plan = client.run(build_plan(FileSystem(client.async_client), name, job_file, inputs, output, local=False,
                                     **kwargs))
        client.run(JobClient(client.async_client).submit(name, plan))


def job_status(cluster: LocalCluster, name: str) -> dict[str, Any]:
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        status: dict[str, Any] = client.run(JobClient(client.async_client).status(name))
        return status


def keys_of(cluster: LocalCluster, name: str) -> dict[str, tuple[bytes, ...]]:
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        return client.keys_on_nodes(f"mr:{name}/")


def test_kill_stops_an_endless_mapper_and_deletes_the_jobs_data(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(2, n=2, r=1, w=2, task_slots=2)
    files = write_corpus(tmp_path / "in", UNEVEN)
    with files[2].open("a") as f:
        f.write("\nLOOP here\n")  # the last split of the big file loops forever
    job_file = tmp_path / "loops.py"
    job_file.write_text(LOOPING_JOB)
    pids = tmp_path / "pids"
    pids.mkdir()
    with Client(cluster.seeds, cluster.secret) as client:
        client.files().put_tree(files[0].parent, "/in")
    submit(cluster, "loops", job_file, ["/in"], "/out", reducers=3, split_size=4000, options={"pids": str(pids)})
    wait_until(lambda: list(pids.iterdir()) and job_status(cluster, "loops")["maps_done"] >= 3, 60,
               "the looping mapper to start while other maps commit")
    assert any(keys_of(cluster, "loops").values()), "committed map output is in the store before the kill"

    started = time.monotonic()
    said = dynamr("kill", "loops", "--dir", str(cluster.root), cwd=tmp_path, check=False)
    looping = [int(p) for entry in pids.iterdir() for p in entry.name.split("-")]
    wait_until(lambda: not any(alive(pid) for pid in looping), 2.0,
               "the looping task process and what it started to be gone")
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"kill took {elapsed:.2f}s"
    assert said.returncode == 0 and "killed" in said.stderr, said.stderr
    status = job_status(cluster, "loops")
    assert status["state"] == "killed"
    assert "killed" in dynamr("status", "loops", "--dir", str(cluster.root), cwd=tmp_path).stdout
    assert keys_of(cluster, "loops") == {"n1": (), "n2": ()}, "no intermediate key of the job remains"
    again = dynamr("kill", "loops", "--dir", str(cluster.root), cwd=tmp_path, check=False)
    assert again.returncode == 1 and "already killed" in again.stderr
    missing = dynamr("kill", "nosuchjob", "--dir", str(cluster.root), cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "no job named 'nosuchjob'" in missing.stderr

