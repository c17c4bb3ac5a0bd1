"""Small files on the store packed into shared map tasks, through real task processes: an inverted index
(whose mapper_init reads the file's name) comes out as if each file had its own task; a record that fails
is reported with its own file, and skip mode skips that record alone, though every file of the task has a
line at the same offset."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from dynamr.client import Client
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import store_output, submit, upload, wait_for_job, wordcount
from tests.integration.test_job_faults import POISONED_JOB
from tests.mrdata import write_corpus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORD = re.compile(r"[a-z0-9']+")


def test_small_files_share_map_tasks_and_each_keeps_its_own_name(make_cluster: MakeCluster,
                                                                  tmp_path: Path) -> None:
    cluster = make_cluster(2, task_slots=2)
    files = write_corpus(tmp_path / "in", [1500 + 97 * i for i in range(40)])
    upload(cluster, tmp_path / "in")
    submit(cluster, "index", EXAMPLES / "inverted_index.py", ["/in"], "/out", reducers=2)
    status = wait_for_job(cluster, "index", 120)
    assert status.state == "succeeded", status.error
    assert status.maps < len(files) / 4, f"{len(files)} small files ran as {status.maps} map tasks"

    expected: dict[str, set[str]] = {}
    for f in files:
        for word in WORD.findall(f.read_text().lower()):
            expected.setdefault(word, set()).add(os.path.basename(f))
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        fs = client.files()
        text = b"".join(fs.read_bytes(f"/out/{e.name}") for e in fs.ls("/out") if e.name.startswith("part-"))
    got = {}
    for line in text.decode().splitlines():
        key, value = line.split("\t")
        got[json.loads(key)] = set(json.loads(value))
    assert got == expected


def test_a_failing_record_names_its_file_and_skip_mode_skips_it_alone(make_cluster: MakeCluster,
                                                                      tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=2)
    files = write_corpus(tmp_path / "in", [900] * 12)
    clean = wordcount(files)
    poisoned = files[7]
    poisoned.write_text("the POISON pill\n" + poisoned.read_text())  # offset 0, as every file's first line
    upload(cluster, tmp_path / "in")
    job_file = tmp_path / "poisoned.py"
    job_file.write_text(POISONED_JOB)

    submit(cluster, "poisoned", job_file, ["/in"], "/out1", reducers=1)
    status = wait_for_job(cluster, "poisoned", 120)
    assert status.state == "failed" and status.maps == 1, (status.state, status.maps)
    assert status.error is not None and status.error.input is not None
    assert status.error.input.path == f"/in/{poisoned.name}", status.error.input

    submit(cluster, "skipping", job_file, ["/in"], "/out2", reducers=1, skip_bad_records=True)
    status = wait_for_job(cluster, "skipping", 120)
    assert status.state == "succeeded", status.error
    assert ("dynamr", "skipped records", 1) in status.counters
    assert store_output(cluster, "/out2") == clean, "every other file's first line is counted"
