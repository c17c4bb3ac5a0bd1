"""What tasks print is kept (issue 15): ``dynamr logs`` and ``dynamr status`` show a failed attempt's output
with its traceback, a successful attempt's prints stay readable, big outputs are bounded, and a process that
dies without a report still leaves what it printed."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import dynamr
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import submit, upload, wait_for_job
from tests.mrdata import write_corpus

NOISY_JOB = '''
import os, subprocess, sys
from dynamr.mapreduce import MRJob

class Noisy(MRJob):
    COMBINE_INPUTS = False  # a task per file: the test places its behaviour by file
    def mapper_init(self):
        print("mapper starting, pid", os.getpid())
        print("a warning on stderr", file=sys.stderr)
        subprocess.run(["echo", "a child process speaks"], check=True)
    def mapper(self, key, line):
        if "POISON" in line:
            print("about to fail on", repr(line), flush=True)
            raise ValueError("cannot digest " + repr(line))
        if "FLOOD" in line:
            for i in range(40000):
                print(f"flood line {i:06d} " + "x" * 30)
        if "CRASH" in line:
            print("going down hard", flush=True)
            os._exit(3)
        for word in line.split():
            yield word, 1
    def reducer(self, word, counts):
        yield word, sum(counts)
'''


def test_a_task_that_prints_then_fails_shows_its_output_in_logs_and_status(make_cluster: MakeCluster,
                                                                           tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=2)
    files = write_corpus(tmp_path / "in", [2000, 2000])
    with files[1].open("a") as f:
        f.write("\nthe POISON pill\n")
    upload(cluster, files[0].parent)
    job_file = tmp_path / "noisy.py"
    job_file.write_text(NOISY_JOB)
    submit(cluster, "noisy", job_file, ["/in"], "/out", reducers=1, split_size=1 << 20)
    status = wait_for_job(cluster, "noisy", 120)
    assert status.state == "failed"
    task = status.error.task.split("/", 1)[1]

    shown = dynamr("status", "noisy", "--dir", str(cluster.root), cwd=tmp_path, check=False)
    assert shown.returncode == 0, shown.stderr
    for text in ("what the attempt printed", "about to fail on 'the POISON pill'", "a warning on stderr",
                 "a child process speaks", "ValueError: cannot digest 'the POISON pill'"):
        assert text in shown.stderr, (text, shown.stderr)

    logs = dynamr("logs", "noisy", task, "--dir", str(cluster.root), cwd=tmp_path).stdout
    assert logs.count(f"== {task}, attempt") == 4, logs  # every attempt of the failing task
    assert logs.count("about to fail on 'the POISON pill'") == 4
    assert "-- traceback --" in logs and 'noisy.py", line 14, in mapper' in logs
    everything = dynamr("logs", "noisy", "--dir", str(cluster.root), cwd=tmp_path).stdout
    assert "succeeded" in everything and everything.count("mapper starting") > 4  # the other task printed too
    other = dynamr("logs", "noisy", "s0-m999", "--dir", str(cluster.root), cwd=tmp_path).stdout
    assert "no attempt of task s0-m999 of job noisy failed or printed anything" in other
    missing = dynamr("logs", "nosuch", "--dir", str(cluster.root), cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "no job named 'nosuch'" in missing.stderr


def test_a_flood_of_output_is_bounded_and_a_crash_keeps_its_last_words(make_cluster: MakeCluster,
                                                                        tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=1, max_attempts=1)
    folder = tmp_path / "in"
    folder.mkdir()
    # one task (which of two would run first depends on a locality lookup that can fail on a busy machine;
    # a crash first left no flood to look at): 1.6 MB of prints, then a death without a report
    (folder / "a.txt").write_text("one FLOOD line\nsome words here\nthen a CRASH\n")
    upload(cluster, folder)
    job_file = tmp_path / "noisy.py"
    job_file.write_text(NOISY_JOB)
    submit(cluster, "crashy", job_file, ["/in"], "/out", reducers=1, split_size=1 << 20)
    status = wait_for_job(cluster, "crashy", 120)
    assert status.state == "failed" and "exited with code 3" in status.error.error, status.error
    logs = dynamr("logs", "crashy", "--dir", str(cluster.root), cwd=tmp_path).stdout
    assert "going down hard" in logs  # the process died without a report; the worker read its output file
    flood = logs[logs.index("flood line 000000"):logs.index("going down hard")]
    assert "flood line 039999" in flood  # the last words before the crash, in the kept tail
    assert "bytes of output not kept" in flood and len(flood) < 70_000  # 1.6 MB printed, about 64 KB kept
    dynamr("cluster", "down", "--dir", str(cluster.root), cwd=tmp_path)
    assert not list(cluster.root.rglob("dynamr-output-*")), "output files are removed with their processes"
