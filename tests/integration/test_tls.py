"""A node serving TLS (certificate made with openssl): clients with the CA talk to it, others cannot."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dynamr.config import ClusterSpec, NodeAddress, Quorum, StoreSettings, write_secret
from dynamr.errors import DynamrError
from dynamr.localcluster import free_ports
from dynamr.rpc import tls
from dynamr.store.client import Client
from tests.helpers import wait_until

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
