"""Automatic garbage collection of file chunks, run by one node of the cluster.

Every ``gc_interval`` seconds, the live node with the smallest id walks the file tree and asks every node
to sweep unreferenced chunks older than ``gc_grace`` (see :meth:`FileSystem.collect_garbage`). Other nodes
skip the round, so there is one collector without any election: if that node dies, the next smallest
takes over at its next round. Wired in by the node process, so the store itself stays unaware of files.
"""

from __future__ import annotations

import asyncio
import logging

from dynamr.errors import DynamrError
from dynamr.files.client import FileSystem
from dynamr.store.client import AsyncClient
from dynamr.store.node import StoreNode

log = logging.getLogger(__name__)


def is_collector(node: StoreNode) -> bool:
    live = [n for n in sorted(node.addresses) if n == node.node_id or node.detector.is_up(n)]
    return live[0] == node.node_id


async def collect_once(node: StoreNode) -> int:
    client = AsyncClient([node.address], b"", transport=node.transport, timeout=node.settings.request_timeout)
    return await FileSystem(client).collect_garbage(node.settings.gc_grace)


async def run_collector(node: StoreNode) -> None:
    while True:
        await asyncio.sleep(node.settings.gc_interval)
        if not is_collector(node):
            continue
        try:
            freed = await collect_once(node)
        except DynamrError as exc:
            log.warning("chunk garbage collection postponed: %s", exc)
            continue
        except Exception:
            log.exception("chunk garbage collection failed")
            continue
        if freed:
            log.info("garbage collection freed %d chunk replica(s)", freed)
