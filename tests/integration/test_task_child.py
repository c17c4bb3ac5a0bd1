"""Task attempts as child processes against real nodes: map over store splits, commit, reduce."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import msgpack

from dynamr.client import Client
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.splits import plan_splits
from dynamr.rpc.codec import SPEC_HEADER, build_record, pack_record
from dynamr.rpc.messages import AttemptReport, CommitRef, SplitRef, TaskInput, TaskOutput, TaskSpec
from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.mrdata import EXAMPLES, read_json_parts, write_corpus

WORD = re.compile(r"[a-z0-9']+")


def run_child(spec: TaskSpec) -> AttemptReport:
    """Run one attempt in a task process, as the worker does: a spec frame in, frames out; its report."""
    payload = pack_record(spec)
    proc = subprocess.run([sys.executable, "-m", "dynamr.mapreduce.child"],
                          input=SPEC_HEADER.pack(len(payload)) + payload, capture_output=True, timeout=120)
    out, report = proc.stdout, None
    while out:
        (size,) = SPEC_HEADER.unpack(out[:SPEC_HEADER.size])
        frame = msgpack.unpackb(out[SPEC_HEADER.size:SPEC_HEADER.size + size], use_list=False, raw=False)
        out = out[SPEC_HEADER.size + size:]
        if frame[0] == 1:
            report = build_record(AttemptReport, frame[1])
    assert report is not None, proc.stderr.decode()
    assert (proc.returncode == 0) == report.ok, proc.stderr.decode()
    return report


def test_map_and_reduce_attempts_in_child_processes(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3)
    files = write_corpus(tmp_path / "in", [4000, 30000, 4000])
    base = TaskSpec(seeds=tuple(cluster.seeds), secret_file=str(cluster.secret_file), job="wc-1",
                    source="/jobs/wordcount.py", source_name="wordcount.py", chunk_size=8192, kind="map", step=0,
                    attempt="")
    with Client(cluster.seeds, cluster.secret) as client:
        fs = client.files(chunk_size=8192)
        fs.put_file(EXAMPLES / "wordcount.py", "/jobs/wordcount.py")
        sizes = []
        for f in files:
            fs.put_file(f, f"/in/{f.name}")
            sizes.append((f"/in/{f.name}", f.stat().st_size))
        splits = plan_splits(sizes, 5000)
        commits = []
        for split in splits:
            task_id, attempt = f"m{split.index}", f"m{split.index}#1"
            result = run_child(replace(base, attempt=attempt, num_partitions=3, input=TaskInput(
                kind="split", splits=(SplitRef(index=split.index, path=split.path, start=split.start, end=split.end,
                                               file_size=split.file_size),))))
            assert result.ok, result
            record = client.run(im.commit(client.async_client, "wc-1", im.Commit(task_id, attempt, result.partitions)))
            commits.append(CommitRef(task_id=record.task_id, attempt=record.attempt, partitions=record.partitions))
        for partition in range(3):
            result = run_child(replace(base, kind="reduce", attempt=f"r{partition}#1", partition=partition,
                                       map_job="wc-1", commits=tuple(commits), output=TaskOutput(
                                           kind="local", path=str(tmp_path / "out" / f"part-{partition:05d}"))))
            assert result.ok, result
    expected = Counter(w for f in files for line in f.read_text().splitlines() for w in WORD.findall(line.lower()))
    assert dict(read_json_parts(tmp_path / "out")) == dict(expected)


def test_a_failing_mapper_reports_the_users_traceback(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3)
    source = ("from dynamr.mapreduce import MRJob\n"
              "class Bad(MRJob):\n"
              "    def mapper(self, key, line):\n"
              "        raise RuntimeError('cannot handle ' + line[:5])\n"
              "        yield key, line\n")
    with Client(cluster.seeds, cluster.secret) as client:
        fs = client.files()
        fs.put_bytes(source.encode(), "/jobs/bad.py")
        fs.put_bytes(b"hello world\n", "/in/a.txt")
    result = run_child(TaskSpec(seeds=tuple(cluster.seeds), secret_file=str(cluster.secret_file), job="bad-1",
                                source="/jobs/bad.py", source_name="bad.py", kind="map", step=0, attempt="m0#1",
                                input=TaskInput(kind="split", splits=(SplitRef(index=0, path="/in/a.txt", start=0,
                                                                               end=12, file_size=12),))))
    assert not result.ok and result.cause == ""  # the user's code failed: counted against the task
    assert "RuntimeError: cannot handle hello" in result.error
    assert 'File "bad.py", line 4, in mapper' in result.traceback  # the name the user knows it by


def test_a_task_process_dies_with_the_node_that_started_it(tmp_path: Path) -> None:
    """The task's stdin stays open (this test holds it), so only the parent-death signal can end it."""
    read_end, write_end = os.pipe()
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "child = subprocess.Popen([sys.executable, '-m', 'dynamr.mapreduce.child'], stdin=int(sys.argv[1]),\n"
         "                         start_new_session=True)\n"
         "open(sys.argv[2], 'w').write(str(child.pid))\n"
         "time.sleep(600)\n", str(read_end), str(pid_file)], pass_fds=(read_end,))
    try:
        child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the task process to start"))
        wait_until(lambda: "pipe_read" in Path(f"/proc/{child}/wchan").read_text(), 30,
                   "the task process to block reading its spec (after asking to die with its parent)")
        parent.kill()
        parent.wait(10)
        wait_until(lambda: not alive(child), 10, "the task process to die with its parent")
    finally:
        parent.kill()
        os.close(read_end)
        os.close(write_end)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
