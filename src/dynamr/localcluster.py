"""A cluster of node processes on this machine, kept under one directory.

Layout of the directory (``.dynamr`` in the working directory for ``dynamr cluster up``)::

    cluster.json          membership and settings (no secret)
    secret                the cluster secret, mode 0600
    nodes/<id>/           each node's data directory
    logs/<id>.log         each node's log
    pids/<id>.pid         pid of each running node

Nodes listen on 127.0.0.1 on ports chosen free when the cluster is created. Integration tests use the
same class, so what they exercise is exactly what users run: separate processes, real TCP, LMDB on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dynamr.config import ClusterSpec, NodeAddress, StoreSettings, new_secret, write_private, write_secret
from dynamr.errors import ClusterNotFoundError, ConfigError, DynamrError, UnavailableError
from dynamr.rpc import tls
from dynamr.rpc.tls import TlsFiles

DEFAULT_DIR = ".dynamr"
COORDINATOR = "coordinator"
#: node processes this Python process started (so they can be polled and reaped)
_CHILDREN: dict[int, subprocess.Popen[Any]] = {}


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the kernel considers free right now (held open together so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class LocalCluster:
    """Node processes under ``root``. With ``ephemeral``, nodes exit when the process that started them does
    (a throwaway cluster of a demo, benchmark or test never outlives its owner)."""

    def __init__(self, root: Path, ephemeral: bool = False) -> None:
        self.root = root
        self.ephemeral = ephemeral

    # --- files ---------------------------------------------------------------------------------------

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def secret_file(self) -> Path:
        return self.root / "secret"

    def data_dir(self, node_id: str) -> Path:
        return self.root / "nodes" / node_id

    def log_file(self, node_id: str) -> Path:
        return self.root / "logs" / f"{node_id}.log"

    def pid_file(self, node_id: str) -> Path:
        return self.root / "pids" / f"{node_id}.pid"

    @property
    def tls_files(self) -> TlsFiles | None:
        """The cluster's TLS material when it was created with TLS (one self-signed certificate, its own CA)."""
        cert, key = self.root / "tls" / tls.CERT, self.root / "tls" / tls.KEY
        return TlsFiles(cert, key, cert) if cert.exists() and key.exists() else None

    def client_ssl(self) -> ssl.SSLContext | None:
        files = self.tls_files
        return tls.client_context(files.ca) if files else None

    @property
    def exists(self) -> bool:
        return self.cluster_file.exists()

    @property
    def spec(self) -> ClusterSpec:
        if not self.exists:
            raise ClusterNotFoundError(
                f"no local cluster in {self.root}: start one with 'dynamr cluster up', or pass --cluster")
        return ClusterSpec.load(self.cluster_file)

    @property
    def secret(self) -> bytes:
        return self.secret_file.read_bytes().strip()

    @property
    def seeds(self) -> list[tuple[str, int]]:
        return [n.address for n in self.spec.nodes]

    @classmethod
    def create(cls, root: Path, nodes: int, settings: StoreSettings | None = None,
               host: str = "127.0.0.1", ephemeral: bool = False, coordinator: bool = True,
               use_tls: bool = False, http: bool | None = None) -> LocalCluster:
        """Write the cluster file and secret for ``nodes`` nodes on free ports (starts nothing). ``http``:
        give every node and the coordinator an HTTP port (metrics, the dashboard); by default a cluster
        that stays up has them, an ephemeral one not."""
        if nodes < 1:
            raise ConfigError("a cluster needs at least one node")
        if settings is None:
            settings = StoreSettings()
        if settings.quorum.n > nodes:
            q = min(settings.quorum.n, nodes)
            settings = settings.replace(quorum=type(settings.quorum)(
                n=q, r=min(settings.quorum.r, q), w=min(settings.quorum.w, q)))
        cluster = cls(root, ephemeral)
        if cluster.exists and cluster.running():
            raise ConfigError(f"a cluster is already running in {root}; stop it with 'dynamr cluster down'")
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)  # the secret, the data and the logs are the owner's only
        for sub in ("nodes", "logs", "pids"):
            (root / sub).mkdir(mode=0o700, exist_ok=True)
        if http is None:
            http = not ephemeral
        ports = free_ports(2 * (nodes + 1) if http else nodes + 1, host)
        http_ports = ports[nodes + 1:] if http else [0] * (nodes + 1)
        spec = ClusterSpec(nodes=tuple(NodeAddress(node_id=f"n{i + 1}", host=host, port=port, http_port=http_ports[i])
                                       for i, port in enumerate(ports[:nodes])), settings=settings,
                           coordinator=NodeAddress(node_id=COORDINATOR, host=host, port=ports[nodes],
                                                   http_port=http_ports[-1])
                           if coordinator else None)
        write_private(cluster.cluster_file, spec.to_json().encode())
        if not cluster.secret_file.exists():
            write_secret(cluster.secret_file, new_secret())
        if use_tls and cluster.tls_files is None:
            tls.make_self_signed(root / "tls")
        return cluster

    # --- processes -----------------------------------------------------------------------------------

    def node_command(self, node_id: str) -> list[str]:
        extra = ["--exit-with-parent", "--parent-pid", str(os.getpid())] if self.ephemeral else []
        files = self.tls_files
        if files is not None:
            extra += ["--tls-cert", str(files.cert), "--tls-key", str(files.key), "--tls-ca", str(files.ca)]
        if node_id == COORDINATOR:
            local = ["--local-jobs"] if self.ephemeral else []  # an embedded run reads and writes local paths
            return [sys.executable, "-m", "dynamr", "coordinator", "start", "--cluster-file", str(self.cluster_file),
                    "--secret-file", str(self.secret_file), "--data-dir", str(self.data_dir(COORDINATOR)), *extra,
                    *local]
        added = self.added()
        if node_id in added:  # not in the cluster file: it joins through the first node
            host, port = added[node_id]
            first = self.spec.nodes[0]
            extra += ["--listen", f"{host}:{port}", "--join", f"{first.host}:{first.port}"]
        return [sys.executable, "-m", "dynamr", "node", "start", "--cluster-file", str(self.cluster_file),
                "--node-id", node_id, "--data-dir", str(self.data_dir(node_id)),
                "--secret-file", str(self.secret_file), *extra]

    # --- nodes added while the cluster runs (they join: the cluster file keeps the first ones) ------------

    @property
    def added_file(self) -> Path:
        return self.root / "added.json"

    def added(self) -> dict[str, tuple[str, int]]:
        """Nodes added with :meth:`add_node`: id -> address."""
        try:
            raw = json.loads(self.added_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): (str(v[0]), int(v[1])) for k, v in raw.items()}

    def add_node(self) -> str:
        """Make room for one more node (an id, a free port, a data directory) and start it; it asks the
        running cluster for membership. Its join is then staged and committed like any other."""
        added = self.added()
        taken = [n.node_id for n in self.spec.nodes] + list(added)
        number = 1 + max((int(t[1:]) for t in taken if t[1:].isdigit() and t.startswith("n")), default=0)
        node_id = f"n{number}"
        host = self.spec.nodes[0].host
        added[node_id] = (host, free_ports(1, host)[0])
        write_private(self.added_file, json.dumps(added).encode())
        self.start([node_id])
        return node_id

    def process_ids(self) -> list[str]:
        """Every process of the cluster: its nodes (the added ones too), then the coordinator if it has one."""
        spec = self.spec
        return ([n.node_id for n in spec.nodes] + list(self.added())
                + ([COORDINATOR] if spec.coordinator is not None else []))

    def address(self, process_id: str) -> tuple[str, int]:
        spec = self.spec
        if process_id == COORDINATOR and spec.coordinator is not None:
            return spec.coordinator.address
        added = self.added()
        if process_id in added:
            return added[process_id]
        return spec.node(process_id).address

    def start_node(self, node_id: str) -> int:
        self.address(node_id)  # validates the id
        self.log_file(node_id).parent.mkdir(parents=True, exist_ok=True)
        self.pid_file(node_id).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_file(node_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as log:
            proc = subprocess.Popen(self.node_command(node_id), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        write_private(self.pid_file(node_id), str(proc.pid).encode())
        _CHILDREN[proc.pid] = proc
        return proc.pid

    def start(self, node_ids: Iterable[str] | None = None, wait: float = 30.0) -> None:
        ids = list(node_ids) if node_ids is not None else self.process_ids()
        for node_id in ids:
            if self.pid(node_id) is None:
                self.start_node(node_id)
        self.wait_ready(ids, wait)

    def pid(self, node_id: str) -> int | None:
        """The pid of a running node process, or None."""
        try:
            pid = int(self.pid_file(node_id).read_text())
        except (OSError, ValueError):
            return None
        proc = _CHILDREN.get(pid)
        if proc is not None:
            return pid if proc.poll() is None else None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid if _is_dynamr_process(pid) else None

    def running(self) -> list[str]:
        return [p for p in self.process_ids() if self.pid(p) is not None]

    def signal_node(self, node_id: str, sig: int) -> None:
        pid = self.pid(node_id)
        if pid is None:
            raise UnavailableError(f"node {node_id} is not running")
        os.kill(pid, sig)

    def kill_node(self, node_id: str) -> None:
        """SIGKILL: the process dies without any cleanup, as in a crash."""
        pid = self.pid(node_id)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        self._wait_exit(pid, 10.0)
        self.pid_file(node_id).unlink(missing_ok=True)

    def stop_node(self, node_id: str, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        pid = self.pid(node_id)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, timeout)
        self.pid_file(node_id).unlink(missing_ok=True)

    def stop(self) -> None:
        if not self.exists:
            return
        ids = self.process_ids()
        for node_id in ids:
            pid = self.pid(node_id)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        for node_id in ids:
            self.stop_node(node_id)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        proc = _CHILDREN.get(pid)
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    _CHILDREN.pop(pid, None)
                    return True
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                if not _is_dynamr_process(pid):
                    return True
            time.sleep(0.02)
        return False

    def wait_ready(self, node_ids: Iterable[str], timeout: float) -> None:
        """Block until each node answers an authenticated ping; a node that exits fails fast with its log."""
        from dynamr.rpc.messages import Ping
        from dynamr.store.client import Client

        spec = self.spec
        deadline = time.monotonic() + timeout
        pending = list(node_ids)
        with Client([spec.nodes[0].address], self.secret, timeout=1.0, ssl_context=self.client_ssl()) as client:
            while pending:
                node_id = pending[0]
                if self.pid(node_id) is None:
                    raise UnavailableError(
                        f"node {node_id} exited during start-up; its log {self.log_file(node_id)} ends with:\n"
                        + self.log_tail(node_id))
                try:
                    client.call_node(self.address(node_id), Ping(), 1.0)
                    pending.pop(0)
                    continue
                except DynamrError:
                    if time.monotonic() > deadline:
                        raise UnavailableError(
                            f"node {node_id} did not answer within {timeout:.0f}s; see "
                            f"{self.log_file(node_id)}") from None
                time.sleep(0.05)

    def log_tail(self, node_id: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file(node_id).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _is_dynamr_process(pid: int) -> bool:
    """Guard against a stale pid file naming a pid the OS reused for another program."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid file
    if not cmdline:
        return False  # a zombie: exited
    return b"dynamr" in cmdline
