"""What the store's fault and membership tests share: a steady write load on a cluster (fresh keys, one
after another, each acknowledged write remembered with its value and time, each failure kept), and every
node's status."""

from __future__ import annotations

import threading
import time

from dynamr.errors import DynamrError
from dynamr.localcluster import LocalCluster
from dynamr.rpc import messages as m
from dynamr.store.client import Client


class WriteLoad:
    def __init__(self, cluster: LocalCluster, prefix: str = "load-", timeout: float = 3.0) -> None:
        self.cluster = cluster
        self.prefix = prefix
        self.timeout = timeout
        #: key -> value of every acknowledged write, in the order they were acknowledged
        self.acked: dict[str, bytes] = {}
        #: key -> wall-clock time it was acknowledged
        self.when: dict[str, float] = {}
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WriteLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def count(self) -> int:
        return len(self.acked)

    def _run(self) -> None:
        with Client(self.cluster.seeds, self.cluster.secret, timeout=self.timeout) as client:
            for i in range(10**9):
                if self._stop.is_set():
                    return
                key, value = f"{self.prefix}{i}", f"v{i}".encode()
                started = time.monotonic()
                try:
                    client.put(key, value)
                except DynamrError as exc:
                    self.errors.append(f"{key}: {exc}")
                    continue
                self.latencies.append(time.monotonic() - started)
                self.acked[key] = value
                self.when[key] = time.time()


def statuses(client: Client) -> dict[str, m.NodeStatusReply]:
    """Every node's status; a node that does not answer fails the call."""
    out = {}
    for node_id, st in client.node_status().items():
        if isinstance(st, DynamrError):
            raise st
        out[node_id] = st
    return out
