"""Fixtures that start real node processes on 127.0.0.1 and always stop them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dynamr.config import StoreSettings
from dynamr.localcluster import LocalCluster

FAST = dict(heartbeat_interval=0.2, failure_timeout=1.0, handoff_interval=0.2, tombstone_reap_interval=0.5,
            replica_timeout=1.0, request_timeout=3.0, worker_heartbeat=0.1, late_write_grace=5.0)

MakeCluster = Callable[..., LocalCluster]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    made: list[LocalCluster] = []

    def make(nodes: int = 3, use_tls: bool = False, http: bool = False, coordinator: bool = True,
             **settings: Any) -> LocalCluster:
        """A started cluster; without ``coordinator``, nodes only (a test that counts every key or hint of
        the store: a coordinator keeps a key of its own, see dynamr.mapreduce.claims)."""
        cluster = LocalCluster.create(tmp_path / f"cluster{len(made)}", nodes,
                                      StoreSettings.from_dict({**FAST, **settings}), ephemeral=True, use_tls=use_tls,
                                      http=http, coordinator=coordinator)
        made.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
    if found := [report for cluster in made for report in internal_errors(cluster)]:
        raise AssertionError("a node hit an internal error (a bug: every error a node sends back must be one of "
                             "dynamr's own):\n" + "\n\n".join(found))


def internal_errors(cluster: LocalCluster, context: int = 30) -> list[str]:
    """Each internal error logged by the cluster's processes, with the lines after it (its traceback)."""
    found = []
    for log in sorted((cluster.root / "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if "internal error in" in line:
                found.append(f"{log.name}:\n" + "\n".join(lines[i:i + context]))
    return found
