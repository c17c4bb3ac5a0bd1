"""The crash test of issue 5: while a word count runs, nodes crash (SIGKILL, no cleanup) or pause (SIGSTOP),
one at a time and at random, and come back, in a loop; the output must still equal the sequential count.

The fault schedule is seeded, so a failure can be replayed. The coordinator keeps running (its own restart
has a test of its own); with N=3 and W=2 the store stays writable with any one node down.
"""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path

from dynamr.localcluster import LocalCluster
from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import keys_of, start_slow_wordcount, store_output, wait_for_job, wordcount

NODES = ["n1", "n2", "n3"]


class Chaos(threading.Thread):
    """Disturbs one node at a time until stopped: a crash and restart, or a pause and resume."""

    def __init__(self, cluster: LocalCluster, seed: int) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.random = random.Random(seed)
        self.stopped = threading.Event()
        self.events: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.random.uniform(0.5, 1.5)):
                node = self.random.choice(NODES)
                if self.random.random() < 0.5:
                    self.cluster.kill_node(node)
                    self.events.append(f"crashed {node}")
                    self.stopped.wait(self.random.uniform(0.2, 1.5))
                    self.cluster.start_node(node)
                    self.cluster.wait_ready([node], 30)
                else:
                    self.cluster.signal_node(node, signal.SIGSTOP)
                    self.events.append(f"paused {node}")
                    try:
                        self.stopped.wait(self.random.uniform(0.5, 3.0))
                    finally:
                        self.cluster.signal_node(node, signal.SIGCONT)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def stop(self) -> None:
        self.stopped.set()
        self.join(60)
        for node in NODES:  # whatever the schedule was doing: every node running again
            if self.cluster.pid(node) is None:
                self.cluster.start_node(node)
            else:
                self.cluster.signal_node(node, signal.SIGCONT)
        self.cluster.wait_ready(NODES, 30)


def test_word_count_survives_nodes_crashing_and_pausing_in_a_loop(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3, n=3, r=2, w=2, task_slots=2, worker_timeout=1.5, speculative_after=2.0)
    files = start_slow_wordcount(cluster, tmp_path, "wc-chaos", [20000] * 6 + [150000], map_seconds=0.4,
                                 reduce_seconds=0.5, reducers=4, split_size=6000)
    chaos = Chaos(cluster, seed=20261121)
    chaos.start()
    try:
        status = wait_for_job(cluster, "wc-chaos", 240)
    finally:
        chaos.stop()
    assert chaos.error is None, f"the fault schedule itself failed: {chaos.error!r}"
    assert len(chaos.events) >= 3, f"too few faults while the job ran to test anything: {chaos.events}"
    assert status.state == "succeeded", (chaos.events, status.error)
    assert store_output(cluster, "/out") == wordcount(files), chaos.events
    left: dict[str, list[str]] = {}

    def clean() -> bool:
        left.clear()
        left.update({node: keys for node, keys in keys_of(cluster, "wc-chaos").items() if keys})
        return not left

    try:
        wait_until(clean, 30, "no intermediate key of the job on any node (deletes missed by a node arrive as hints)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still there: {left}") from None
