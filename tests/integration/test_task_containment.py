"""User code is contained: what it starts does not outlive its attempt, and its memory is bounded while it runs."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import alive, submit, upload, wait_for_job
from tests.mrdata import write_corpus

#: a mapper that starts a helper which would sleep for 15 minutes: in its group, or in a session of its own
#: (setsid, environment kept), or forked without exec into a session of its own (its environment is the task
#: process's own); the first line of every split decides whether the attempt then fails
SPAWNING_JOB = '''
import os, subprocess, time
from pathlib import Path
from dynamr.mapreduce import MRJob

class Spawns(MRJob):
    def mapper_init(self):
        self.pids = Path(self.options["pids"])
        self.started = False
    def mapper(self, key, line):
        if not self.started:
            self.started = True
            escape = "ESCAPE" in line
            if "FORK" in line:
                pid = os.fork()
                if pid == 0:
                    os.setsid()
                    time.sleep(900)
                    os._exit(0)
            else:
                pid = subprocess.Popen(["sleep", "900"], start_new_session=escape).pid
            (self.pids / str(pid)).write_text("")
            if "FAIL" in line:
                raise RuntimeError("this attempt fails after starting a helper")
        yield line[:3], 1
    def mapper_final(self):
        if "hold" in self.options:
            time.sleep(float(self.options["hold"]))
        return ()
    def reducer(self, key, values):
        yield key, sum(values)
'''

HUNGRY_JOB = '''
import time
from dynamr.mapreduce import MRJob

class Hungry(MRJob):
    def mapper(self, key, line):
        hoard = []
        for _ in range(400):  # 400 MiB, a MiB at a time, touched so it is resident
            hoard.append(bytearray(b"x" * (1 << 20)))
            time.sleep(0.002)
        yield "done", len(hoard)
'''


def _helpers(pids: Path) -> list[int]:
    return [int(p.name) for p in pids.iterdir()]


def test_processes_started_by_user_code_do_not_outlive_their_attempt(make_cluster: MakeCluster,
                                                                       tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=2, max_attempts=1)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, first in enumerate(["plain", "ESCAPE plain", "plain", "ESCAPE again", "FORK away"]):
        (folder / f"f{i}.txt").write_text(f"{first}\n" + "some words here\n" * 50)
    upload(cluster, folder)
    job_file = tmp_path / "spawns.py"
    job_file.write_text(SPAWNING_JOB)
    pids = tmp_path / "pids"
    pids.mkdir()
    submit(cluster, "spawns", job_file, ["/in"], "/out", reducers=1, options={"pids": str(pids)})
    assert wait_for_job(cluster, "spawns", 120).state == "succeeded"
    assert len(_helpers(pids)) == 5
    wait_until(lambda: not any(alive(pid) for pid in _helpers(pids)), 30,
               "every helper, in its attempt's group or escaped with setsid (exec'd or forked), to be killed")

    (folder / "f0.txt").write_text("FAIL now\n" + "some words here\n" * 50)
    upload(cluster, folder)
    failing = tmp_path / "pids-failing"
    failing.mkdir()
    submit(cluster, "fails", job_file, ["/in"], "/out2", reducers=1, options={"pids": str(failing)})
    assert wait_for_job(cluster, "fails", 120).state == "failed"
    wait_until(lambda: _helpers(failing) and not any(alive(pid) for pid in _helpers(failing)), 30,
               "the helpers of the failed attempt and of the others to be killed")


def test_what_a_node_killed_with_9_left_running_is_killed_when_it_restarts(make_cluster: MakeCluster,
                                                                           tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=1)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("plain\n" + "words\n" * 10)
    upload(cluster, folder)
    job_file = tmp_path / "spawns.py"
    job_file.write_text(SPAWNING_JOB)
    pids = tmp_path / "pids"
    pids.mkdir()
    submit(cluster, "orphans", job_file, ["/in"], "/out", reducers=1, options={"pids": str(pids), "hold": "600"})
    wait_until(lambda: _helpers(pids), 60, "the mapper to start its helper")
    cluster.kill_node("n1")
    helper = _helpers(pids)[0]
    assert alive(helper), "a helper outlives the node killed with -9 (nothing could stop it then)"
    cluster.start(["n1"])
    wait_until(lambda: not alive(helper), 30, "the restarted node to kill what its task processes left")


def test_a_task_over_the_memory_limit_is_stopped_while_it_runs(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=1, max_attempts=2, task_memory_limit=100 << 20)
    files = write_corpus(tmp_path / "in", [500])
    upload(cluster, files[0].parent)
    job_file = tmp_path / "hungry.py"
    job_file.write_text(HUNGRY_JOB)
    submit(cluster, "hungry", job_file, ["/in"], "/out", reducers=1)
    status = wait_for_job(cluster, "hungry", 120)
    assert status.state == "failed"
    assert status.error is not None and "used more than 100 MiB of memory" in status.error.error, status.error
    assert "raise task_memory_limit" in status.error.error


GROUP_HOLDER = '''
import subprocess, sys
hold = bytearray(b"x" * (60 << 20))  # resident: every page written
code = "import sys; h = bytearray(b'y' * (40 << 20)); print('ready', flush=True); sys.stdin.read()"
helper = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert helper.stdout.readline() == "ready\\n"
print("ready", flush=True)
sys.stdin.read()
helper.stdin.close()
helper.wait()
'''


def test_a_group_s_memory_counts_every_process_in_it_and_nothing_else() -> None:
    """The memory check adds up the task process and what it started, and only that group's processes."""
    import subprocess
    import sys

    from dynamr.mapreduce import containment

    leader = subprocess.Popen([sys.executable, "-c", GROUP_HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        assert leader.stdout is not None and leader.stdout.readline() == "ready\n"
        gone = 2**22 + 7  # above pid_max's default: no such group
        held = containment.groups_rss([leader.pid, gone])
        assert held[gone] == 0
        assert 100 << 20 <= held[leader.pid] < 400 << 20, held  # both processes' pages, not the test's own
        assert containment.groups_rss([]) == {}
    finally:
        assert leader.stdin is not None
        leader.stdin.close()
        leader.wait(30)
