"""Machines as real as one host allows: nodes in network namespaces of their own (tests/integration/netns.py).
A link is cut during a word count and healed after; a fourth machine joins the way docs/deploy.md says.
Skipped where network namespaces cannot be made (not root, no ``ip netns``)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamr.mapreduce.submit import JobClient
from dynamr.rpc import messages as m
from dynamr.store.client import AsyncClient, Client
from tests.helpers import dynamr, wait_until
from tests.integration import netns
from tests.integration.conftest import FAST

pytestmark = pytest.mark.skipif(not netns.available(), reason="needs root and 'ip netns' (network namespaces)")

ROOT = Path(__file__).resolve().parents[2]
#: the bound this test states for anti-entropy after a partition heals: every pair of replicas holds the same
#: hash tree within this many seconds (with exchanges every second, three nodes)
CONVERGED_WITHIN = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[netns.NetnsCluster]:
    settings = {**FAST, "anti_entropy_interval": 1.0, "anti_entropy_share": 0.5, "worker_timeout": 3.0}
    made = netns.NetnsCluster(tmp_path / "ns", 3, settings)
    try:
        made.build()
        made.start()
        yield made
    finally:
        made.close()


def _trees_agree(cluster: netns.NetnsCluster) -> bool:
    with Client(cluster.seeds, cluster.secret, timeout=10.0) as client:
        for a in cluster.nodes:
            for b in cluster.nodes:
                if a < b:
                    mine = client.call_node(a, m.TreeRequest(peer=b), timeout=30.0)
                    theirs = client.call_node(b, m.TreeRequest(peer=a), timeout=30.0)
                    assert isinstance(mine, m.TreeReply) and isinstance(theirs, m.TreeReply)
                    if (mine.keys, mine.chunks) != (theirs.keys, theirs.chunks):
                        return False
    return True


def _job_running_on(cluster: netns.NetnsCluster, name: str, node: str) -> bool:
    async def ask() -> bool:
        async with AsyncClient(cluster.seeds, cluster.secret, timeout=5.0) as client:
            status = await JobClient(client).status(name)
            return status.state == "running" and any(a.node == node for a in status.running_attempts)

    return asyncio.run(ask())


def _attempts_on(cluster: netns.NetnsCluster, name: str, node: str) -> list[m.AttemptView]:
    async def ask() -> list[m.AttemptView]:
        async with AsyncClient(cluster.seeds, cluster.secret, timeout=5.0) as client:
            status = await JobClient(client).status(name)
            return [a for a in status.attempts if a.node == node]

    return asyncio.run(ask())


def test_a_node_partitioned_away_during_a_word_count(cluster: netns.NetnsCluster, tmp_path: Path) -> None:
    rng = random.Random(3)
    words = [f"w{i}" for i in range(3000)]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in range(6):
        lines = (" ".join(rng.choices(words, k=12)) for _ in range(25_000))
        (inputs / f"part{f}.txt").write_text("\n".join(lines) + "\n")
    expected = Counter(w for p in inputs.iterdir() for w in re.findall(r"[\w']+", p.read_text().lower()))
    out = tmp_path / "out"
    host, port = cluster.seeds[0]
    run = subprocess.Popen(
        [sys.executable, "-m", "dynamr", "run", str(ROOT / "examples" / "wordcount.py"), str(inputs), "-o", str(out),
         "--cluster", f"{host}:{port}", "--secret-file", str(cluster.secret_file), "--name", "cut",
         "--split-size", "512K", "-r", "3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(run.communicate()[0]), daemon=True)
    reader.start()
    try:
        wait_until(lambda: _job_running_on(cluster, "cut", "n3"), 120, "a task of the job to run on n3",
                   interval=0.1)
        cluster.cut("n3")
        reader.join(300)
        assert run.returncode == 0, output[0] if output else "the job did not end"
    finally:
        if run.poll() is None:
            run.kill()
        cluster.heal("n3")
    got: Counter[str] = Counter()
    for part in out.glob("part-*"):
        for line in part.read_text().splitlines():
            key, value = line.split("\t")
            got[key.strip('"')] = int(value)
    assert got == expected
    # the cut was real: the coordinator lost n3's running tasks and ran them elsewhere
    assert any(not a.ok and "lost with node n3" in a.error for a in _attempts_on(cluster, "cut", "n3"))
    # the writes n3 missed while away reach it: every pair of replicas ends with the same tree
    wait_until(lambda: _trees_agree(cluster), CONVERGED_WITHIN, "anti-entropy to make every tree agree",
               interval=1.0)


def test_a_machine_joins_as_the_deploy_guide_says(tmp_path: Path) -> None:
    made = netns.NetnsCluster(tmp_path / "ns", 4, dict(FAST), listed=3)
    try:
        made.build()
        made.start()
        with Client(made.seeds, made.secret, timeout=5.0) as client:
            for i in range(300):
                client.put(f"k{i}", b"v%d" % i)
        made.start_node("n4")  # --listen its own address, --join a member's (docs/deploy.md)
        host, port = made.seeds[0]
        remote = ["--cluster", f"{host}:{port}", "--secret-file", str(made.secret_file)]

        def staged() -> bool:
            result = dynamr("cluster", "join", "n4", *remote, cwd=tmp_path, check=False)
            return result.returncode == 0 and "staged: join n4" in result.stdout

        wait_until(staged, 60, "n4 to register and its join to be staged", interval=0.5)
        assert "committed" in dynamr("cluster", "commit", *remote, cwd=tmp_path).stdout

        def joined() -> bool:
            with Client(made.seeds, made.secret, timeout=5.0) as client:
                reply = client.call_node(made.seeds[0], m.ClusterAdmin(action="show"))
            assert isinstance(reply, m.ClusterStateReply)
            return not reply.state.phase and "n4" in reply.state.owners

        wait_until(joined, 120, "the join to finish", interval=0.5)
        status = dynamr("cluster", "status", *remote, cwd=tmp_path).stdout
        assert "4 of 4 nodes up" in status, status
        with Client([made.seeds[0], (made.host("n4"), netns.NODE_PORT)], made.secret, timeout=5.0) as client:
            assert all(client.get(f"k{i}").values == (b"v%d" % i,) for i in range(300))
            n4 = client.call_node((made.host("n4"), netns.NODE_PORT), m.NodeStatus())
            assert isinstance(n4, m.NodeStatusReply) and n4.keys > 100
    finally:
        made.close()


def _status_of(cluster: netns.NetnsCluster, node: str) -> m.NodeStatusReply:
    with Client(cluster.seeds, cluster.secret, timeout=5.0) as client:
        reply = client.call_node(node, m.NodeStatus(), timeout=5.0)
    assert isinstance(reply, m.NodeStatusReply)
    return reply


def _report(status: m.NodeStatusReply, about: str) -> m.HealthSeen | None:
    return next((seen for seen in status.health if seen.record.node_id == about), None)


def _beat(cluster: netns.NetnsCluster, node: str, about: str) -> int:
    """The heartbeat round of ``about``'s newest report that ``node`` holds (-1: none yet)."""
    seen = _report(_status_of(cluster, node), about)
    return -1 if seen is None else seen.record.beat


def test_two_nodes_cut_from_each_other_hear_of_each_other_by_gossip(cluster: netns.NetnsCluster) -> None:
    cluster.cut_link("n1", "n3")
    try:
        wait_until(lambda: "n3" in _status_of(cluster, "n1").down and "n1" in _status_of(cluster, "n3").down,
                   30, "n1 and n3 to hold each other down")
        # n2 carries their reports: n1's news of n3 keeps advancing though n1 cannot reach n3
        first = _beat(cluster, "n1", "n3")
        wait_until(lambda: _beat(cluster, "n1", "n3") > first + 4, 30,
                   "n1 to hear of n3's newer heartbeats through n2")
        wait_until(lambda: (r := _report(_status_of(cluster, "n1"), "n3")) is not None and r.record.down == ("n1",),
                   30, "n3's report, as n1 hears it, to hold n1 down")
        # the command line asked from n1's machine says so, and names who still reaches n3
        shown = subprocess.run(
            ["ip", "netns", "exec", cluster.namespace("n1"), sys.executable, "-m", "dynamr", "cluster", "status",
             "--cluster", f"{cluster.host('n1')}:{netns.NODE_PORT}", "--secret-file", str(cluster.secret_file)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
        assert "unreachable from here; up for n2" in shown.stdout, shown.stdout + shown.stderr
        assert "2 of 3 nodes up" in shown.stdout and shown.returncode == 1
    finally:
        cluster.heal_link("n1", "n3")
    wait_until(lambda: not _status_of(cluster, "n1").down and not _status_of(cluster, "n3").down, 30,
               "n1 and n3 to hold each other up again")
