"""A committed map output whose every replica is lost (issue 5): that map, and only it, runs again.

Real coordinator, node and task processes on loopback. The loss is made for real in the store: while the
reduces wait in ``reducer_init``, the test deletes the winning attempt's output objects through the store
(every replica gets the tombstone), as a disk failure on every holder would leave it.
"""

from __future__ import annotations

from pathlib import Path

from dynamr.files.client import FileSystem
from dynamr.mapreduce import intermediate as im
from dynamr.store.client import Client
from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import (
    attempts_per_task,
    is_reduce,
    job_status,
    keys_of,
    start_slow_wordcount,
    store_output,
    wait_for_job,
    wordcount,
)

REDUCERS = 2


def test_a_lost_map_output_is_produced_again_and_the_job_completes(make_cluster: MakeCluster,
                                                                   tmp_path: Path) -> None:
    cluster = make_cluster(2, n=2, r=1, w=2, task_slots=2)
    name = "wc-lost"
    files = start_slow_wordcount(cluster, tmp_path, name, [6000, 6000, 30000, 6000], map_seconds=0,
                                 reduce_seconds=2.0, reducers=REDUCERS, split_size=8000)

    def reduces_running() -> bool:
        return sum(1 for a in job_status(cluster, name).running_attempts if is_reduce(a)) == REDUCERS

    wait_until(reduces_running, 60, "both reduces running (every map committed)")
    victim = f"{name}/s0-m1"
    (committed,) = [a.attempt for a in job_status(cluster, name).attempts if a.task == victim and a.ok]
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        fs = FileSystem(client.async_client)
        deleted = client.run(im.delete_outputs(fs, name, committed, range(REDUCERS)))
    assert deleted == REDUCERS, "the map wrote both partitions"

    status = wait_for_job(cluster, name, 120)
    assert status.state == "succeeded", (status.error, status.attempts)
    assert store_output(cluster, "/out") == wordcount(files)
    maps = attempts_per_task(status, "m")
    assert maps[victim] == 2, "the map whose output was lost ran again"
    assert all(n == 1 for task, n in maps.items() if task != victim), "no other committed map ran again"
    failed = [a for a in status.attempts if is_reduce(a) and not a.ok]
    assert failed and all(f"committed output of task {victim}" in a.error for a in failed)
    reduces = attempts_per_task(status, "r")
    assert all(reduces[a.task] == 2 for a in failed), "each reduce that found the loss ran once more"
    assert not any(nodes for nodes in keys_of(cluster, name).values()), "no intermediate key is left"
