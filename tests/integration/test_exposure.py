"""What a cluster exposes: files private to their owner whatever the umask, no listener on every interface
unless asked for."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from dynamr.client import Client
from dynamr.config import ClusterSpec, NodeAddress, Quorum, StoreSettings, write_secret
from dynamr.localcluster import LocalCluster, free_ports
from tests.integration.conftest import FAST
from tests.integration.jobtools import submit, upload, wait_for_job
from tests.mrdata import write_corpus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_every_file_of_a_cluster_is_private_even_under_umask_022(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        cluster = LocalCluster.create(tmp_path / "c", 2, StoreSettings.from_dict({**FAST, "n": 2, "r": 1, "w": 2}),
                                      ephemeral=True)
        cluster.start()
    finally:
        os.umask(previous)
    try:
        files = write_corpus(tmp_path / "in", [4000, 3000])
        upload(cluster, files[0].parent)
        submit(cluster, "private", EXAMPLES / "wordcount.py", ["/in"], "/out", reducers=2)
        assert wait_for_job(cluster, "private", 120).state == "succeeded"
        with Client(cluster.seeds, cluster.secret) as client:
            client.put("k", b"v")
    finally:
        cluster.stop()
    exposed = []
    for path in [cluster.root, *cluster.root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            exposed.append(f"{path.relative_to(cluster.root)} {stat.filemode(mode)}")
    kinds = {p.relative_to(cluster.root).parts[0] for p in cluster.root.rglob("*")}
    assert {"nodes", "logs", "pids", "secret", "cluster.json"} <= kinds
    assert list((cluster.root / "nodes" / "n1").rglob("*.mdb")), "LMDB files were checked"
    assert not exposed, "readable by others: " + ", ".join(exposed[:10])


def test_a_node_refuses_to_listen_on_every_interface_unless_told_to(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    write_secret(tmp_path / "secret", b"s")
    for host in ("", "0.0.0.0", "::"):
        spec = ClusterSpec(nodes=(NodeAddress(node_id="n1", host=host, port=port),),
                           settings=StoreSettings(quorum=Quorum(n=1, r=1, w=1)))
        (tmp_path / "cluster.json").write_text(spec.to_json())
        result = subprocess.run([sys.executable, "-m", "dynamr", "node", "start", "--cluster-file",
                                 str(tmp_path / "cluster.json"), "--node-id", "n1", "--data-dir", str(tmp_path / "d"),
                                 "--secret-file", str(tmp_path / "secret")], capture_output=True, text=True,
                                timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert "would listen on every interface" in lines[0] and "listen_on_all_interfaces" in lines[0]
