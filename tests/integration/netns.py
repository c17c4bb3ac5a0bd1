"""A cluster of real machines, as far as one Linux host allows: each node in a network namespace of its own,
with its own address on a bridge, started with the commands docs/deploy.md gives. Links are cut and healed
with ``ip link``, so a partition is a real one: nothing reaches the node, not even loopback tricks.

Needs root and ``ip netns``; :func:`available` says whether this machine allows it (tests skip otherwise).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until

NODE_PORT = 7400
COORDINATOR_PORT = 7500


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def available() -> bool:
    """Whether network namespaces can be made here (root, and ``ip netns`` allowed)."""
    if os.geteuid() != 0:
        return False
    name = f"dynprobe{secrets.token_hex(2)}"
    try:
        if _ip("netns", "add", name, check=False).returncode != 0:
            return False
        _ip("netns", "del", name, check=False)
        return True
    except FileNotFoundError:
        return False


class NetnsCluster:
    """``count`` nodes, n1..nN, each in namespace ``<tag>-nI`` at 10.<subnet>.I+10; the coordinator beside n1."""

    def __init__(self, root: Path, count: int, settings: dict[str, object] | None = None, listed: int = 0) -> None:
        """``count`` machines; the cluster file lists the first ``listed`` (all by default): the others join."""
        self.root = root
        self.tag = secrets.token_hex(2)
        self.subnet = f"10.{200 + int(self.tag, 16) % 50}.{int(self.tag, 16) % 250}"
        self.bridge = f"dbr{self.tag}"
        self.nodes = [f"n{i}" for i in range(1, count + 1)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.secret_file = root / "secret"
        self.cluster_file = root / "cluster.json"
        self._made: list[str] = []
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(16))
        self.listed = self.nodes[:listed or count]
        self.cluster_file.write_text(json.dumps({
            "nodes": [{"id": n, "host": self.host(n), "port": NODE_PORT} for n in self.listed],
            "coordinator": {"host": self.host("n1"), "port": COORDINATOR_PORT},
            "settings": settings or {},
        }, indent=1))

    # --- addresses and names ---------------------------------------------------------------------------

    def host(self, node: str) -> str:
        return f"{self.subnet}.{10 + int(node[1:])}"

    def namespace(self, node: str) -> str:
        return f"dyn{self.tag}-{node}"

    def _veth(self, node: str) -> str:
        return f"dv{self.tag}{node}"

    @property
    def seeds(self) -> list[tuple[str, int]]:
        return [(self.host(n), NODE_PORT) for n in self.nodes]

    @property
    def secret(self) -> bytes:
        return self.secret_file.read_text().strip().encode()

    # --- the network -----------------------------------------------------------------------------------

    def build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(f"link:{self.bridge}")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for node in self.nodes:
            ns, veth, peer = self.namespace(node), self._veth(node), f"dp{self.tag}{node}"
            _ip("netns", "add", ns)
            self._made.append(f"netns:{ns}")
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            self._made.append(f"link:{veth}")
            _ip("link", "set", peer, "netns", ns)
            _ip("-n", ns, "link", "set", peer, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self.host(node)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")

    def cut(self, node: str) -> None:
        """Partition ``node`` away from every other node and from this host."""
        _ip("link", "set", self._veth(node), "down")

    def heal(self, node: str) -> None:
        _ip("link", "set", self._veth(node), "up")

    def cut_link(self, a: str, b: str) -> None:
        """Drop every packet between ``a`` and ``b`` (each still reaches the others)."""
        for here, there in ((a, b), (b, a)):
            _ip("-n", self.namespace(here), "route", "add", "blackhole", f"{self.host(there)}/32")

    def heal_link(self, a: str, b: str) -> None:
        for here, there in ((a, b), (b, a)):
            _ip("-n", self.namespace(here), "route", "del", "blackhole", f"{self.host(there)}/32", check=False)

    # --- processes, started as docs/deploy.md says -----------------------------------------------------

    def _run_in(self, node: str, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(node), sys.executable, "-m", "dynamr", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def start_node(self, node: str) -> None:
        joins = [] if node in self.listed else ["--listen", f"{self.host(node)}:{NODE_PORT}",
                                                "--join", f"{self.host('n1')}:{NODE_PORT}"]
        self._run_in(node, node, ["node", "start", "--cluster-file", str(self.cluster_file), "--node-id", node,
                                  "--data-dir", str(self.root / "data" / node), "--secret-file",
                                  str(self.secret_file), *joins])

    def start(self) -> None:
        for node in self.listed:
            self.start_node(node)
        self._run_in("n1", "coordinator", ["coordinator", "start", "--cluster-file", str(self.cluster_file),
                                           "--data-dir", str(self.root / "data" / "coordinator"),
                                           "--secret-file", str(self.secret_file)])
        from dynamr.store.client import Client

        def all_up() -> bool:
            with Client(self.seeds, self.secret, timeout=2.0) as client:
                statuses = client.node_status()
            return all(not isinstance(statuses.get(n), Exception | None) for n in self.listed)

        wait_until(all_up, 60, "every listed node of the namespace cluster to answer", interval=0.3)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(10)
        for made in reversed(self._made):
            kind, name = made.split(":", 1)
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)
