"""Store nodes wired together in one process: in-memory engines, in-process transport."""

from __future__ import annotations

from dynamr.config import ClusterSpec, NodeAddress, StoreSettings
from dynamr.rpc.transport import LocalTransport
from dynamr.store import versions
from dynamr.store.client import AsyncClient
from dynamr.store.engine import MemoryEngine
from dynamr.store.node import StoreNode

SETTINGS = StoreSettings(heartbeat_interval=0.05, failure_timeout=0.3, handoff_interval=0.05,
                         tombstone_reap_interval=0.1, replica_timeout=0.5, request_timeout=1.0,
                         max_value_bytes=1024, max_key_bytes=64, max_message_bytes=1 << 20)


class Cluster:
    def __init__(self, count: int, settings: StoreSettings) -> None:
        self.spec = ClusterSpec(nodes=tuple(NodeAddress(node_id=f"n{i}", host="mem", port=i)
                                            for i in range(1, count + 1)), settings=settings)
        self.transport = LocalTransport()
        self.nodes = {n.node_id: StoreNode(self.spec, n.node_id, MemoryEngine(), self.transport)
                      for n in self.spec.nodes}
        for node in self.nodes.values():
            self.transport.register(node.address, node.dispatcher)
            node.start()
        self.client = AsyncClient([n.address for n in self.spec.nodes], b"unused", transport=self.transport,
                                  timeout=2.0)

    def set_down(self, node_id: str, down: bool = True) -> None:
        self.transport.set_down(self.nodes[node_id].address, down)

    def set_paused(self, node_id: str, paused: bool = True) -> None:
        """The node takes requests but answers none (SIGSTOP)."""
        self.transport.set_paused(self.nodes[node_id].address, paused)

    def local(self, node_id: str, key: bytes) -> tuple[bytes, ...]:
        return versions.live_values(self.nodes[node_id].replica.read(key))

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.stop()
