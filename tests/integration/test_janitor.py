"""The coordinator's janitor with real processes: what no job needs goes, what a running job needs stays."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dynamr.files import FileSystem
from dynamr.localcluster import COORDINATOR, LocalCluster
from dynamr.mapreduce import intermediate as im
from dynamr.store.client import AsyncClient
from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import keys_of, start_slow_wordcount, store_output, wait_for_job, wordcount
from tests.integration.test_dashboard import _metrics, _total

#: an attempt of a job the coordinator does not know (deleted long ago): what it wrote, landing very late
GONE = "gone/s0-m0#9"


def _plant_leftovers(cluster: LocalCluster) -> None:
    async def pieces() -> object:
        yield b"word\t1\n"

    async def go() -> None:
        async with AsyncClient(cluster.seeds, cluster.secret, timeout=10) as client:
            await FileSystem(client).put_object(im.output_key("gone", GONE, 0), pieces())  # type: ignore[arg-type]
            await client.put(im.commit_key("gone", "gone/s0-m0"), im.Commit("gone/s0-m0", GONE, (0,)).encode())

    asyncio.run(go())


def test_the_janitor_deletes_what_no_job_needs_and_nothing_a_running_job_needs(make_cluster: MakeCluster,
                                                                               tmp_path: Path) -> None:
    cluster = make_cluster(3, http=True, job_janitor_interval=0.3)
    _plant_leftovers(cluster)  # (written: the janitor may delete them at once)
    # a job of several seconds: the janitor scans every 0.3 s while its outputs and records come and go
    files = start_slow_wordcount(cluster, tmp_path, "wc", [3000] * 4, map_seconds=0.3, reduce_seconds=0.3,
                                 reducers=2, split_size=1500)
    wait_until(lambda: not any(keys_of(cluster, "gone").values()), 60, "the janitor to delete the leftovers")
    assert "the janitor deleted" in cluster.log_file(COORDINATOR).read_text()
    samples = _metrics(cluster, COORDINATOR)  # (in one round or two: the planting may straddle them)
    assert (_total(samples, "dynamr_janitor_deleted_total", kind="object"),
            _total(samples, "dynamr_janitor_deleted_total", kind="commit")) == (1, 1)
    status = wait_for_job(cluster, "wc", 240)
    assert status.state == "succeeded", status.error
    assert store_output(cluster, "/out") == wordcount(files)
    assert not any(a.error for a in status.attempts if not a.ok), [a.error for a in status.attempts]
