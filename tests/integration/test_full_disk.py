"""A node whose disk fills up: writes go to the other replicas, nothing acknowledged is lost, the node says
so, and it gets every missing copy back once space returns (a real tmpfs, mounted for the test)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamr.client import Client
from dynamr.config import StoreSettings
from dynamr.errors import DynamrError
from dynamr.localcluster import LocalCluster
from dynamr.rpc import messages as m
from dynamr.store import versions
from dynamr.store.ring import Ring
from tests.helpers import wait_until
from tests.integration.conftest import FAST


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 12 MiB tmpfs, or a skip where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0700", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
    try:
        yield mount, tmp_path
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _on_node(client: Client, node_id: str, key: bytes) -> tuple[bytes, ...]:
    reply = client.call_node(node_id, m.ReplicaRead(key=key))
    assert isinstance(reply, m.ReplicaState)
    return versions.live_values(versions.decode_state(reply.state))


def test_a_full_disk_fails_over_and_heals_once_space_returns(small_disk: tuple[Path, Path]) -> None:
    mount, tmp_path = small_disk
    settings = StoreSettings.from_dict({**FAST, "n": 3, "r": 2, "w": 2, "map_size": 1 << 30})
    cluster = LocalCluster.create(tmp_path / "c", 3, settings, ephemeral=True, coordinator=False)
    os.symlink(mount, cluster.data_dir("n3"))  # n3 keeps everything on the small disk
    cluster.start()
    try:
        ring = Ring({n.node_id: n.address for n in cluster.spec.nodes}, settings.vnodes)
        n3_keys = [k for k in (f"k{i}".encode() for i in range(2000)) if ring.preference_list(k, 3)[0] == "n3"]
        with Client(cluster.seeds, cluster.secret, timeout=10) as client:
            fs = client.files()
            blobs = {f"/big/{i}": os.urandom(3 << 20) for i in range(8)}  # 24 MiB per replica: n3 fills up
            for path, data in blobs.items():
                fs.put_bytes(data, path)  # every upload is acknowledged (W=2 of the other replicas)
            for key in n3_keys[:50]:  # keys n3 would coordinate: its disk refuses, the next replica takes them
                client.put(key, b"value-" + key)
            status = client.node_status()["n3"]
            assert not isinstance(status, DynamrError) and status.storage_error, "n3 reports its full disk"
            assert all(fs.read_bytes(path) == data for path, data in blobs.items())
            assert all(client.get(key).values == (b"value-" + key,) for key in n3_keys[:50])
            said = subprocess.run([sys.executable, "-m", "dynamr", "cluster", "status", "--dir", str(cluster.root)],
                                  capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
                                  check=False)
            assert "storage failing" in said.stdout, said.stdout

            subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
            chunks = [cid for path in blobs for cid in _chunk_ids(client, path)]

            def healed() -> bool:
                holders = client.run(client.async_client.chunk_holders(chunks))
                return (all("n3" in nodes for nodes in holders.values())
                        and all(_on_node(client, "n3", key) == (b"value-" + key,) for key in n3_keys[:50]))

            wait_until(healed, 60, "n3 to get back every chunk and key it missed")
    finally:
        cluster.stop()


def _chunk_ids(client: Client, path: str) -> list[bytes]:
    return [loc.chunk_id for loc in client.files().locate(path)]
