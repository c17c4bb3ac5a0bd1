"""The one place for configuration defaults and their validation.

:class:`StoreSettings` holds every tunable of a store node, each documented where it is declared, and
validated when built (quorum sizes, ordered timeouts, positive limits). :class:`ClusterSpec` is the static
membership of a cluster (the cluster file: node ids and addresses, plus the default quorum). Secrets never
live in the cluster file: they are read from a separate file or the ``DYNAMR_SECRET`` environment variable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynamr.errors import ConfigError

log = logging.getLogger(__name__)

SECRET_ENV = "DYNAMR_SECRET"
_WARNED: set[Quorum] = set()  # weak quorums already warned about (once per process is enough)
FSYNC_POLICIES = ("always", "periodic", "never")
#: node ids are short: they are part of hint keys and of every version vector
MAX_NODE_ID = 64
#: LMDB's 511-byte key limit, less a hint key's 2-byte length prefix and the owner's node id
MAX_KEY_LIMIT = 511 - 2 - MAX_NODE_ID


@dataclass(frozen=True, slots=True, kw_only=True)
class Quorum:
    """Replication factor ``n``, read quorum ``r`` and write quorum ``w`` for one request or a cluster."""

    n: int = 3
    r: int = 2
    w: int = 2

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"N must be at least 1 (got N={self.n})")
        for name, value in (("R", self.r), ("W", self.w)):
            if not 1 <= value <= self.n:
                raise ConfigError(f"{name} must be between 1 and N={self.n} (got {name}={value})")

    @property
    def strongly_consistent(self) -> bool:
        """True when read and write quorums overlap (R + W > N)."""
        return self.r + self.w > self.n


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """Tunables of a store node. Every field has a default that suits a small cluster on a LAN."""

    quorum: Quorum = field(default_factory=Quorum)
    #: virtual nodes (ring tokens) per physical node; more tokens, more even load
    vnodes: int = 128
    #: seconds between liveness pings to each peer
    heartbeat_interval: float = 0.5
    #: seconds of silence after which a peer whose pings came steadily is suspected: a peer is down once the
    #: phi-accrual suspicion of it passes ``phi_threshold``, learnt from the gaps between its recent pings
    #: (see dynamr.store.failure); a peer whose answers come irregularly is given longer
    failure_timeout: float = 2.5
    #: suspicion level (phi) at which a peer is declared down: higher, fewer false alarms on a busy machine
    #: and slower detection (8: a live peer is wrongly declared down with probability 10^-8 at that moment)
    phi_threshold: float = 8.0
    #: default deadline, seconds, of a client request (get, put, delete)
    request_timeout: float = 5.0
    #: deadline, seconds, of one replica read or write sent by a coordinator
    replica_timeout: float = 2.0
    #: seconds between attempts to hand hints back to their owners
    handoff_interval: float = 1.0
    #: seconds between sweeps that purge tombstones every replica holds
    tombstone_reap_interval: float = 10.0
    #: seconds between a node's anti-entropy exchanges (each with the next peer in turn: their hash trees are
    #: compared and only what differs is repaired); 0 turns anti-entropy off
    anti_entropy_interval: float = 30.0
    #: share of a node's event loop the scans that build hash trees may take (they pause in between)
    anti_entropy_share: float = 0.1
    #: bytes per second anti-entropy repairs may move, each way (0: no limit)
    anti_entropy_bytes_per_second: int = 64 * 1024 * 1024
    #: bytes per second a node sends when a change of membership moves data to new owners (0: no limit)
    handoff_bytes_per_second: int = 256 * 1024 * 1024
    #: seconds between passes that re-hash every local chunk copy (a corrupt one is deleted, and
    #: anti-entropy copies a good one back); 0 turns scrubbing off
    scrub_interval: float = 24 * 3600.0
    #: bytes per second a scrub reads
    scrub_bytes_per_second: int = 32 * 1024 * 1024
    #: seconds between automatic garbage collections of unreferenced file chunks (one node runs them)
    gc_interval: float = 600.0
    #: unreferenced chunks younger than this many seconds are kept (uploads in progress)
    gc_grace: float = 3600.0
    #: task slots per node (tasks run at once in child processes); 0: one per CPU core
    task_slots: int = 0
    #: seconds between a worker's heartbeats to the coordinator (an idle worker's poll instead waits up to
    #: this long at the coordinator, which answers it the moment a task is ready)
    worker_heartbeat: float = 0.5
    #: seconds without a worker heartbeat before the coordinator considers the node dead
    worker_timeout: float = 5.0
    #: attempts of a task that raises before its job fails
    max_attempts: int = 4
    #: seconds a task attempt may go without progress (no input read, no counter touched) before it is
    #: killed and retried (Hadoop's mapreduce.task.timeout)
    task_timeout: float = 600.0
    #: backup attempts for stragglers near the end of a phase (at most ``speculative_share`` of a job's tasks)
    speculative_execution: bool = True
    speculative_share: float = 0.1
    #: an attempt at least this many times slower than its phase's median speed may get a backup...
    speculative_slow_factor: float = 2.0
    #: ...once it has run this many seconds
    speculative_after: float = 5.0
    #: failed attempts of one job on one node before that node gets no more of the job's tasks
    node_exclusion_failures: int = 3
    #: seconds after a job's cleanup when the outputs of its map attempts that never reported success are
    #: deleted once more: a store node may still land a write sent by a task that died (a loaded machine)
    late_write_grace: float = 30.0
    #: seconds between the coordinator's scans of the store for intermediate objects and commit records that
    #: no job needs (written by a task cut off from everyone, landing after every sweep of its job); they
    #: are deleted. 0: never
    job_janitor_interval: float = 300.0
    #: finished jobs whose whole status (every attempt) the coordinator keeps in memory, the newest; older ones
    #: keep the line 'dynamr jobs' shows, and their status is read from the coordinator's disk when asked for
    job_statuses_kept: int = 200
    #: attempts of one job a task process runs before a fresh process replaces it (1: a process per attempt)
    task_process_reuse: int = 20
    #: a task process whose peak resident memory passed this many bytes is replaced after its attempt
    task_process_max_rss: int = 512 << 20
    #: task processes are forked from a zygote that has imported the task modules (milliseconds each), not
    #: started as new interpreters (0.2 to 0.4 s of CPU each); Linux only, elsewhere always new interpreters
    task_zygote: bool = True
    #: an attempt whose processes hold more resident memory than this (bytes) is killed and fails with a clear
    #: message; 0: the machine's memory divided by the task slots, at least 1 GiB
    task_memory_limit: int = 0
    #: largest key accepted, bytes (LMDB keys are at most 511 bytes; hints add the owner's id to the key)
    max_key_bytes: int = 400
    #: largest value accepted, bytes; larger data belongs in files on the store
    max_value_bytes: int = 8 * 1024 * 1024
    #: largest single message on the wire, bytes (it travels in frames of at most ``frame_bytes``)
    max_message_bytes: int = 64 * 1024 * 1024
    #: largest frame on the wire, bytes
    frame_bytes: int = 1024 * 1024
    #: "always": fsync each group commit before acknowledging; "periodic": every ``fsync_interval``;
    #: "never": leave it to the OS (replication is the durability)
    fsync: str = "always"
    fsync_interval: float = 1.0
    #: LMDB map size, bytes (sparse: costs nothing until used)
    map_size: int = 1 << 38
    #: allow a node or the coordinator to listen on a wildcard address ("", 0.0.0.0, ::), i.e. on every
    #: network of the machine; off, such a host is refused (name the one interface to listen on instead)
    listen_on_all_interfaces: bool = False
    #: bytes of partly received multi-frame messages a process holds at once, over all its connections
    max_buffered_bytes: int = 256 * 1024 * 1024
    #: connections a node or the coordinator serves at once; more are refused
    max_connections: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.max_key_bytes <= MAX_KEY_LIMIT:
            raise ConfigError(f"max_key_bytes must be between 1 and {MAX_KEY_LIMIT} (got {self.max_key_bytes})")
        if self.vnodes < 1:
            raise ConfigError(f"vnodes must be at least 1 (got {self.vnodes})")
        if self.fsync not in FSYNC_POLICIES:
            raise ConfigError(f"fsync must be one of {', '.join(FSYNC_POLICIES)} (got {self.fsync!r})")
        for name in ("heartbeat_interval", "failure_timeout", "request_timeout", "replica_timeout",
                     "handoff_interval", "tombstone_reap_interval", "fsync_interval", "gc_interval",
                     "worker_heartbeat", "worker_timeout", "task_timeout", "speculative_after",
                     "late_write_grace"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive (got {getattr(self, name)})")
        if self.task_slots < 0 or self.max_attempts < 1:
            raise ConfigError("task_slots must be 0 (one per core) or more, and max_attempts at least 1")
        if not 0.0 <= self.speculative_share <= 1.0 or self.speculative_slow_factor <= 1.0:
            raise ConfigError("speculative_share must be between 0 and 1, and speculative_slow_factor above 1")
        if self.node_exclusion_failures < 1 or self.job_statuses_kept < 1:
            raise ConfigError("node_exclusion_failures and job_statuses_kept must be at least 1")
        if self.max_buffered_bytes < self.max_message_bytes or self.max_connections < 1:
            raise ConfigError("max_buffered_bytes must be at least max_message_bytes, and max_connections at least 1")
        if self.job_janitor_interval < 0:
            raise ConfigError(f"job_janitor_interval must be 0 (never) or positive (got {self.job_janitor_interval})")
        if self.task_memory_limit != 0 and self.task_memory_limit < (32 << 20):
            raise ConfigError("task_memory_limit must be 0 (automatic) or at least 32 MiB")
        if self.task_process_reuse < 1 or self.task_process_max_rss < (16 << 20):
            raise ConfigError("task_process_reuse must be at least 1 and task_process_max_rss at least 16 MiB")
        if self.worker_timeout <= self.worker_heartbeat:
            raise ConfigError(f"worker_timeout ({self.worker_timeout}s) must exceed worker_heartbeat "
                              f"({self.worker_heartbeat}s)")
        if self.anti_entropy_interval < 0 or self.scrub_interval < 0:
            raise ConfigError("anti_entropy_interval and scrub_interval must be 0 (off) or positive")
        if not 0.0 < self.anti_entropy_share <= 1.0:
            raise ConfigError(f"anti_entropy_share must be above 0 and at most 1 (got {self.anti_entropy_share})")
        if self.anti_entropy_bytes_per_second < 0 or self.scrub_bytes_per_second <= 0 or \
                self.handoff_bytes_per_second < 0:
            raise ConfigError("anti_entropy_bytes_per_second and handoff_bytes_per_second must be 0 (no "
                              "limit) or positive, and scrub_bytes_per_second positive")
        if not 1.0 <= self.phi_threshold <= 32.0:
            raise ConfigError(f"phi_threshold must be between 1 and 32 (got {self.phi_threshold})")
        if self.gc_grace < 0:
            raise ConfigError(f"gc_grace must not be negative (got {self.gc_grace})")
        if self.failure_timeout <= self.heartbeat_interval:
            raise ConfigError(
                f"failure_timeout ({self.failure_timeout}s) must exceed heartbeat_interval "
                f"({self.heartbeat_interval}s), or every peer looks dead between two pings")
        if self.replica_timeout > self.request_timeout:
            raise ConfigError(
                f"replica_timeout ({self.replica_timeout}s) must not exceed request_timeout "
                f"({self.request_timeout}s)")
        if not 1024 <= self.frame_bytes <= self.max_message_bytes:
            raise ConfigError("frame_bytes must be at least 1024 and at most max_message_bytes")
        if self.max_value_bytes + self.max_key_bytes + 65536 > self.max_message_bytes:
            raise ConfigError("max_message_bytes must leave room for the largest key and value")
        if not self.quorum.strongly_consistent and self.quorum not in _WARNED:
            _WARNED.add(self.quorum)
            log.warning("R + W <= N (%s): reads may miss acknowledged writes", self.quorum)

    def replace(self, **changes: Any) -> StoreSettings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StoreSettings:
        """Build settings from a plain mapping (a cluster file's ``settings``), rejecting unknown keys."""
        raw = dict(raw)
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)} - {"quorum"}
        unknown = set(raw) - known - {"n", "r", "w"}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))} (the quorum is set with n, r, w)")
        for name, value in raw.items():
            expected = int if name in ("n", "r", "w") else hints[name]
            if expected is float and type(value) is int:
                raw[name] = value = float(value)
            if expected in (int, float, str, bool) and type(value) is not expected:
                raise ConfigError(f"setting {name} must be {expected.__name__}, not {type(value).__name__} "
                                  f"({value!r})")
        quorum = Quorum(n=raw.pop("n", 3), r=raw.pop("r", 2), w=raw.pop("w", 2))
        return cls(quorum=quorum, **raw)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "quorum"}
        out.update(n=self.quorum.n, r=self.quorum.r, w=self.quorum.w)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeAddress:
    """One member of the cluster: a stable id and where it listens."""

    node_id: str
    host: str
    port: int
    #: where it serves HTTP on the same host (a node: /metrics; the coordinator: the dashboard and
    #: /metrics); 0: no HTTP
    http_port: int = 0

    def __post_init__(self) -> None:
        if not self.node_id or len(self.node_id) > MAX_NODE_ID or "@" in self.node_id:
            raise ConfigError(f"node id {self.node_id!r} must be 1 to {MAX_NODE_ID} characters without '@'")
        for name, port in (("port", self.port), ("http_port", self.http_port)):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} {port} of {self.node_id} is out of range")
        if self.http_port and self.http_port == self.port:
            raise ConfigError(f"{self.node_id}: http_port must differ from port ({self.port})")

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def wildcard(self) -> bool:
        """The host means "every interface" (a listener there is reachable from every network)."""
        return self.host.strip("[]") in WILDCARD_HOSTS


#: hosts that make a listener bind every interface of the machine
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "*")


def check_listen(address: NodeAddress, settings: StoreSettings) -> None:
    """Refuse to listen on every interface unless the cluster file says so explicitly."""
    if address.wildcard and not settings.listen_on_all_interfaces:
        raise ConfigError(f"{address.node_id} would listen on every interface ({address.host!r}); give the one "
                          "address to listen on, or set listen_on_all_interfaces: true in the cluster file's "
                          "settings if that is what you want")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """Static membership: the nodes of the cluster and the settings they share."""

    nodes: tuple[NodeAddress, ...]
    settings: StoreSettings = field(default_factory=StoreSettings)
    #: where the MapReduce coordinator listens (None: no coordinator, a store only)
    coordinator: NodeAddress | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ConfigError("a cluster needs at least one node")
        ids = [n.node_id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"node ids must be unique (got {ids})")
        if self.settings.quorum.n > len(self.nodes):
            raise ConfigError(
                f"N={self.settings.quorum.n} replicas need at least {self.settings.quorum.n} nodes; "
                f"the cluster has {len(self.nodes)}. Lower N (and R, W) or add nodes.")

    def node(self, node_id: str) -> NodeAddress:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise ConfigError(f"node {node_id!r} is not in the cluster file (known: "
                          f"{', '.join(n.node_id for n in self.nodes)})")

    def to_json(self) -> str:
        raw: dict[str, Any] = {
            "nodes": [{"id": n.node_id, "host": n.host, "port": n.port, **_http(n)} for n in self.nodes],
            "settings": self.settings.to_dict(),
        }
        if self.coordinator is not None:
            raw["coordinator"] = {"host": self.coordinator.host, "port": self.coordinator.port,
                                  **_http(self.coordinator)}
        return json.dumps(raw, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterSpec:
        try:
            raw = json.loads(text)
            nodes = tuple(NodeAddress(node_id=str(n["id"]), host=str(n["host"]), port=int(n["port"]),
                                      http_port=int(n.get("http_port", 0)))
                          for n in raw["nodes"])
            settings = StoreSettings.from_dict(raw.get("settings", {}))
            coord = raw.get("coordinator")
            coordinator = (NodeAddress(node_id="coordinator", host=str(coord["host"]), port=int(coord["port"]),
                                       http_port=int(coord.get("http_port", 0)))
                           if coord else None)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"malformed cluster file: {exc}") from exc
        return cls(nodes=nodes, settings=settings, coordinator=coordinator)

    @classmethod
    def load(cls, path: Path) -> ClusterSpec:
        try:
            return cls.from_json(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read cluster file {path}: {exc.strerror}") from exc
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc


def _http(address: NodeAddress) -> dict[str, int]:
    return {"http_port": address.http_port} if address.http_port else {}


def new_secret() -> bytes:
    """A fresh random cluster secret (hex text, so it can be typed and put in an environment variable)."""
    return secrets.token_hex(32).encode()


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, whatever the umask (an existing file is made so too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_secret(path: Path, secret: bytes) -> None:
    """Write a secret file readable by its owner only."""
    write_private(path, secret)


def load_secret(secret: str | None = None, secret_file: Path | None = None) -> bytes:
    """The cluster secret from, in order: an explicit value, a file, the ``DYNAMR_SECRET`` variable."""
    if secret:
        return secret.encode()
    if secret_file is not None:
        try:
            value = secret_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {secret_file}: {exc.strerror}") from exc
        if not value:
            raise ConfigError(f"secret file {secret_file} is empty")
        return value
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    raise ConfigError(
        f"no cluster secret: pass --secret or --secret-file, or set {SECRET_ENV}")
