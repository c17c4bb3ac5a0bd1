"""A node serving TLS (certificate made with openssl): clients with the CA talk to it, others cannot."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dynamr.client import Client as FullClient
from dynamr.config import ClusterSpec, NodeAddress, Quorum, StoreSettings, write_secret
from dynamr.errors import DynamrError
from dynamr.localcluster import free_ports
from dynamr.rpc import tls
from dynamr.rpc.messages import Ping
from dynamr.store.client import Client
from tests.helpers import dynamr, wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import wordcount
from tests.mrdata import write_corpus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def test_node_serves_tls_to_clients_that_trust_its_ca(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=dynamr-test"], check=True, capture_output=True)
    port = free_ports(1)[0]
    spec = ClusterSpec(nodes=(NodeAddress(node_id="n1", host="127.0.0.1", port=port),),
                       settings=StoreSettings(quorum=Quorum(n=1, r=1, w=1)))
    (tmp_path / "cluster.json").write_text(spec.to_json())
    write_secret(tmp_path / "secret", b"tls-secret")
    node = subprocess.Popen([sys.executable, "-m", "dynamr", "node", "start", "--cluster-file",
                             str(tmp_path / "cluster.json"), "--node-id", "n1", "--data-dir", str(tmp_path / "d"),
                             "--secret-file", str(tmp_path / "secret"), "--tls-cert", str(cert), "--tls-key",
                             str(key), "--tls-ca", str(cert), "--exit-with-parent"])
    try:
        def put_get() -> bool:
            with Client([("127.0.0.1", port)], b"tls-secret", ssl_context=tls.client_context(cert),
                        timeout=2) as client:
                client.put("k", b"private")
                return client.get("k").values == (b"private",)

        wait_until(put_get, 20, "a TLS round trip")
        with Client([("127.0.0.1", port)], b"tls-secret", timeout=1) as plain, \
                pytest.raises(DynamrError, match="requires TLS"):
            plain.get("k")  # a plaintext client cannot even start the handshake, and is told why
    finally:
        node.terminate()
        node.wait(10)


def test_a_job_runs_on_a_cluster_with_tls_everywhere(make_cluster: MakeCluster, tmp_path: Path) -> None:
    """Nodes, the coordinator, workers, task processes and the CLI all talk TLS; nothing talks plain TCP."""
    cluster = make_cluster(2, use_tls=True, n=2, r=1, w=2, task_slots=2)
    files = write_corpus(tmp_path / "in", [3000, 5000, 2000])
    run = dynamr("run", str(EXAMPLES / "wordcount.py"), *map(str, files), "-o", "store:/out", "--local-cluster",
                 "--dir", str(cluster.root), "--split-size", "2K", cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    with FullClient(cluster.seeds, cluster.secret, ssl_context=cluster.client_ssl(), timeout=10) as client:
        fs = client.files()
        text = b"".join(fs.read_bytes(f"/out/{e.name}") for e in fs.ls("/out") if e.name.startswith("part-"))
    got = {k.strip('"'): int(v) for k, v in (line.split("\t") for line in text.decode().splitlines())}
    assert got == wordcount(files)
    coordinator = cluster.address("coordinator")
    with Client(cluster.seeds, cluster.secret, timeout=2) as plain, pytest.raises(DynamrError, match="requires TLS"):
        plain.call_node(coordinator, Ping(), 2.0)
