"""The coordinator's janitor with real processes: what no job needs goes, what a running job needs stays;
and while another coordinator claims the store, nothing goes and no job is accepted."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynamr.errors import BadRequestError
from dynamr.files import FileSystem
from dynamr.localcluster import COORDINATOR, LocalCluster, free_ports
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.claims import CLAIM_KEY, Claim, encode, merged
from dynamr.store.client import AsyncClient
from dynamr.web.token import web_token
from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import keys_of, start_slow_wordcount, store_output, wait_for_job, wordcount
from tests.integration.test_dashboard import _get, _metrics, _total, _url

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


def _claims(cluster: LocalCluster) -> dict[str, Claim]:
    async def go() -> dict[str, Claim]:
        async with AsyncClient(cluster.seeds, cluster.secret, timeout=10) as client:
            return merged((await client.get(CLAIM_KEY)).values)

    return asyncio.run(go())


def _claim_as(cluster: LocalCluster, claim: Claim) -> None:
    """Write a claim as another coordinator would (a sibling of what is there: readers merge them)."""
    async def go() -> None:
        async with AsyncClient(cluster.seeds, cluster.secret, timeout=10) as client:
            await client.put(CLAIM_KEY, encode({claim.coordinator: claim}))

    asyncio.run(go())


def test_a_second_coordinator_on_the_same_store_refuses_to_start(make_cluster: MakeCluster,
                                                                 tmp_path: Path) -> None:
    cluster = make_cluster(3, http=True)
    first = wait_until(lambda: _claims(cluster), 30, "the coordinator to claim the store")
    assert len(first) == 1
    # the same cluster file, but a coordinator of its own address and data directory (a copied set-up)
    raw = json.loads(cluster.cluster_file.read_text())
    raw["coordinator"] = {"host": "127.0.0.1", "port": free_ports(1)[0]}
    other = tmp_path / "other.json"
    other.write_text(json.dumps(raw))
    result = subprocess.run([sys.executable, "-m", "dynamr", "coordinator", "start", "--cluster-file", str(other),
                             "--secret-file", str(cluster.secret_file), "--data-dir", str(tmp_path / "other")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "another coordinator" in result.stderr and "stop one" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, no traceback
    assert _claims(cluster).keys() == first.keys()  # it wrote nothing: the first one goes on unhindered
    assert _total(_metrics(cluster, COORDINATOR), "dynamr_coordinator_rivals") == 0


def test_while_another_coordinator_claims_the_store_no_job_is_accepted_and_nothing_deleted(
        make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3, http=True, job_janitor_interval=0.3)
    wait_until(lambda: _claims(cluster), 30, "the coordinator to claim the store")
    (mine,) = _claims(cluster).values()
    # started at the same moment, at the same address on another host (a copied cluster file, a moved address)
    _claim_as(cluster, Claim("rival", mine.address, time.time(), 3600.0, "elsewhere"))
    wait_until(lambda: _total(_metrics(cluster, COORDINATOR), "dynamr_coordinator_rivals") == 1, 30,
               "the coordinator to see the rival")
    _plant_leftovers(cluster)
    paused = _total(_metrics(cluster, COORDINATOR), "dynamr_janitor_rounds_total", outcome="paused")
    wait_until(lambda: _total(_metrics(cluster, COORDINATOR), "dynamr_janitor_rounds_total",
                              outcome="paused") >= paused + 3, 60, "three janitor rounds with the leftovers there")
    assert any(keys_of(cluster, "gone").values())  # what might be the rival's data stays
    refusal = f"accepts no job now: another coordinator (rival at {mine.address} on host elsewhere)"
    with pytest.raises(BadRequestError, match=re.escape(refusal)):
        start_slow_wordcount(cluster, tmp_path, "wc", [300], map_seconds=0, reduce_seconds=0)
    assert "uses this cluster's store" in cluster.log_file(COORDINATOR).read_text()
    status, page = _get(_url(cluster, "/", COORDINATOR), web_token(cluster.secret))
    assert status == 200 and refusal in page

    _claim_as(cluster, Claim("rival", mine.address, time.time(), 0.001, "elsewhere"))  # stopped: its claim lapses
    wait_until(lambda: not any(keys_of(cluster, "gone").values()), 60, "the janitor to delete the leftovers")
    assert _total(_metrics(cluster, COORDINATOR), "dynamr_coordinator_rivals") == 0
    files = start_slow_wordcount(cluster, tmp_path, "wc", [300], map_seconds=0, reduce_seconds=0)
    assert wait_for_job(cluster, "wc", 120).state == "succeeded"
    assert store_output(cluster, "/out") == wordcount(files)
