"""Helpers of the job fault tests: submit a job to a LocalCluster, follow it, read its output."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

from dynamr.client import Client
from dynamr.files.client import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.submit import JobClient, build_plan
from dynamr.rpc.messages import AttemptView, JobStatusView, RunningAttemptView
from tests.mrdata import write_corpus

WORD = re.compile(r"[a-z0-9']+")

#: word count whose maps and reduces take at least the given time (so faults land in the phase wanted), one
#: map task per input file at least (the tests place faults by task)
SLOW_WORDCOUNT = '''
import re, time
from dynamr.mapreduce import MRJob

WORD = re.compile(r"[a-z0-9']+")

class SlowCount(MRJob):
    COMBINE_INPUTS = False
    def mapper(self, key, line):
        for word in WORD.findall(line.lower()):
            yield word, 1
    def mapper_final(self):
        time.sleep({map_seconds})
        return ()
    def combiner(self, word, counts):
        yield word, sum(counts)
    def reducer_init(self):
        time.sleep({reduce_seconds})
    def reducer(self, word, counts):
        yield word, sum(counts)
'''


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
        client.run(JobClient(client.async_client).submit(name, plan, Path(job_file).read_bytes()))


def attempts_per_task(status: JobStatusView, kind: str) -> Counter[str]:
    """Ended attempts of each map (kind "m") or reduce ("r") task of step 0, from the job's task records."""
    return Counter(a.task for a in status.attempts if a.task.split("/")[1].startswith(f"s0-{kind}"))


def is_reduce(attempt: AttemptView | RunningAttemptView) -> bool:
    return bool(attempt.task.split("/")[1].startswith("s0-r"))


def job_status(cluster: LocalCluster, name: str) -> JobStatusView:
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        status: JobStatusView = client.run(JobClient(client.async_client).status(name))
        return status


def keys_of(cluster: LocalCluster, name: str) -> dict[str, tuple[bytes, ...]]:
    """Every intermediate key of a job on each node: commit records and objects."""
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        records = client.keys_on_nodes(f"{im.PREFIX}{name}/")
        objects = client.keys_on_nodes(im.job_objects(name))
        return {node: records[node] + objects[node] for node in records}


def wordcount(files: list[Path]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for f in files:
        for line in f.read_text().splitlines():
            counts.update(WORD.findall(line.lower()))
    return dict(counts)


def store_output(cluster: LocalCluster, folder: str) -> dict[str, int]:
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        fs = client.files()
        names = [e.name for e in fs.ls(folder)]
        assert "_SUCCESS" in names
        text = b"".join(fs.read_bytes(f"{folder}/{n}") for n in sorted(names) if n.startswith("part-")).decode()
    out = {}
    for line in text.splitlines():
        key, value = line.split("\t")
        assert key.strip('"') not in out, f"{key} appears twice in the output"
        out[key.strip('"')] = int(value)
    return out


def wait_for_job(cluster: LocalCluster, name: str, timeout: float) -> JobStatusView:
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        status: JobStatusView = client.run(asyncio.wait_for(JobClient(client.async_client).wait(name), timeout))
        return status


def upload(cluster: LocalCluster, folder: Path) -> None:
    with Client(cluster.seeds, cluster.secret) as client:
        client.files().put_tree(folder, "/in")


def start_slow_wordcount(cluster: LocalCluster, tmp_path: Path, name: str, sizes: list[int], *,
                         map_seconds: float, reduce_seconds: float, **plan: Any) -> list[Path]:
    """Upload a corpus and submit SLOW_WORDCOUNT over it as job ``name`` (output /out); returns the files."""
    files = write_corpus(tmp_path / "in", sizes)
    upload(cluster, files[0].parent)
    job_file = tmp_path / "slowcount.py"
    job_file.write_text(SLOW_WORDCOUNT.format(map_seconds=map_seconds, reduce_seconds=reduce_seconds))
    submit(cluster, name, job_file, ["/in"], "/out", **plan)
    return files
