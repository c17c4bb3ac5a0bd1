"""``dynamr cluster``: start, inspect and stop a local cluster of node processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
from rich.table import Table

from dynamr.cli.common import Target, cluster_options, console, json_option, print_json, resolve_target
from dynamr.config import Quorum, StoreSettings
from dynamr.errors import ConfigError, DeadlineExceededError, UnavailableError
from dynamr.localcluster import COORDINATOR, DEFAULT_DIR, LocalCluster
from dynamr.rpc import messages as m
from dynamr.store import membership
from dynamr.store.client import ClusterView
from dynamr.store.membership import ClusterState
from dynamr.store.overview import NodeRow, anti_entropy, handoff, node_rows
from dynamr.store.ring import Ring


@click.group()
def cluster() -> None:
    """Manage a cluster."""


@cluster.command("up")
@click.option("--nodes", type=click.IntRange(min=1), default=None,
              help="Number of nodes (default 3, or the existing cluster's).")
@click.option("-n", "n", type=click.IntRange(min=1), default=3, show_default=True, help="Replicas per key (N).")
@click.option("-r", "r", type=click.IntRange(min=1), default=2, show_default=True, help="Default read quorum (R).")
@click.option("-w", "w", type=click.IntRange(min=1), default=2, show_default=True, help="Default write quorum (W).")
@click.option("--dir", "root", type=click.Path(path_type=Path), default=DEFAULT_DIR, show_default=True,
              help="Directory for the cluster's files, data and logs.")
@click.option("--tls", "use_tls", is_flag=True,
              help="Encrypt every connection (a self-signed certificate is made with openssl).")
def up(nodes: int | None, n: int, r: int, w: int, root: Path, use_tls: bool) -> None:
    """Start a local cluster in the background (ports chosen free, on 127.0.0.1)."""
    local = LocalCluster(root)
    if local.exists and (nodes is None or nodes == len(local.spec.nodes)):
        if len(local.running()) == len(local.process_ids()):
            console.print(f"cluster in {root} is already running ({len(local.spec.nodes)} nodes)")
            return
        console.print(f"restarting the existing cluster in {root}")
    else:
        if local.exists and local.running():
            raise ConfigError(f"a cluster of another size runs in {root}; stop it with 'dynamr cluster down'")
        count = nodes or 3
        q = min(n, count)
        settings = StoreSettings(quorum=Quorum(n=q, r=min(r, q), w=min(w, q)))
        local = LocalCluster.create(root, count, settings, use_tls=use_tls)
    with console.status("starting nodes..."):
        local.start()
    spec = local.spec
    quorum = spec.settings.quorum
    console.print(f"[green]cluster up[/]: {len(spec.nodes)} nodes, N={quorum.n} R={quorum.r} W={quorum.w}, "
                  f"files in {root}", highlight=False)
    for node in spec.nodes:
        console.print(f"  {node.node_id}  {node.host}:{node.port}", highlight=False)


@cluster.command("status")
@json_option
@cluster_options
def status(as_json: bool, target: Target) -> None:
    """Show each node and its health (exits with 1 when a node does not answer)."""
    with target.client(timeout=3.0) as client:
        view = client.cluster()
        statuses = client.node_status()
    ring, _, _ = _admin(target, "show")
    rows = node_rows(view, statuses, ring)
    healthy = sum(1 for row in rows if row.status is not None)
    if as_json:
        print_json({"nodes": rows, "up": healthy, "n": view.n,
                    "membership": membership.to_record(ring)})
    else:
        _print_status(rows, ring, view)
        console.print(f"{healthy} of {len(view.nodes)} nodes up; N={view.n}")
    if healthy < len(view.nodes):
        raise SystemExit(1)


def _print_status(rows: list[NodeRow], ring: ClusterState, view: ClusterView) -> None:
    table = Table(title="dynamr cluster")
    for col in ("node", "address", "state", "member", "epoch", "keys", "chunks", "hints", "tombstones",
                "disk free", "sees down", "anti-entropy", "handoff"):
        table.add_column(col)
    for row in rows:
        st, seen = row.status, row.report
        if st is None:
            if seen is None:
                table.add_row(row.node, row.address, "[red]down[/]", row.member, *[""] * 9)
                continue
            r = seen.record
            state = (f"[yellow]unreachable from here; up for {', '.join(row.up_for)} (reported {seen.age:.1f}s "
                     "ago)[/]" if row.state == "unreachable" else f"[red]down[/] (last report {seen.age:.0f}s ago)")
            table.add_row(row.node, row.address, state, row.member, r.epoch, str(r.keys), "", str(r.hints),
                          "", _gigabytes(r.disk_free), ", ".join(r.down) or "-", "", "")
            continue
        state = "[yellow]up, storage failing[/]" if st.storage_error else "[green]up[/]"
        table.add_row(row.node, row.address, state, row.member, st.epoch, str(st.keys), str(st.chunks),
                      str(st.hints), str(st.tombstones), _gigabytes(seen.record.disk_free) if seen else "",
                      ", ".join(st.down) or "-", anti_entropy(st), handoff(st))
    console.print(table)
    if ring.moving or ring.staged:
        _show_plan(ring, view.ring.vnodes, view.n)
    for row in rows:
        if row.status is not None and row.status.storage_error:
            console.print(f"[yellow]storage failing[/] on {row.node}: {row.status.storage_error}", highlight=False,
                          soft_wrap=True)


# --- membership: staged changes, committed (see dynamr.store.membership) ------------------------------


def _admin(target: Target, action: str, node_id: str = "") -> tuple[ClusterState, int, int]:
    """Send a membership change (or ``show``) to the cluster; its state after, with N and vnodes."""
    with target.client(timeout=30.0) as client:
        view = client.cluster()
        reply = None
        for address in [*view.nodes.values(), *target.seeds]:
            try:
                reply = client.call_node(address, m.ClusterAdmin(action=action, node_id=node_id), timeout=30.0)
                break
            except (UnavailableError, DeadlineExceededError):
                continue
    if not isinstance(reply, m.ClusterStateReply):
        raise UnavailableError("no node of the cluster answered")
    return membership.from_record(reply.state), view.n, view.ring.vnodes


def _show_plan(state: ClusterState, vnodes: int, n: int) -> None:
    if state.moving:
        waiting = [p for p in state.participants() if p not in state.acks]
        console.print(f"[yellow]moving[/] from {', '.join(state.owners)} to {', '.join(state.pending)}: phase "
                      f"{state.phase}, waiting for {', '.join(waiting) or 'nobody'}", highlight=False)
    if not state.staged:
        console.print("nothing staged", highlight=False)
        return
    for change in state.staged:
        console.print(f"  {change.action} {change.node_id}", highlight=False)
    before = Ring(state.owners, vnodes)
    after = Ring(state.planned_owners(), vnodes)
    points = [i * (Ring.SPACE // 4096) for i in range(4096)]
    moved = sum(1 for h in points if before.walk_of_hash(h)[:n] != after.walk_of_hash(h)[:n])
    console.print(f"ring after commit: {', '.join(state.planned_owners())}; about {100 * moved / len(points):.0f}% "
                  "of keys get a new owner. Apply with: dynamr cluster commit", highlight=False)


def _member_change(action: str, node_id: str, target: Target) -> None:
    state, n, vnodes = _admin(target, action, node_id)
    console.print(f"staged: {action} {node_id}", highlight=False)
    _show_plan(state, vnodes, n)


@cluster.command("join")
@click.argument("node")
@cluster_options
def join(node: str, target: Target) -> None:
    """Stage the join of NODE (a node started with --join, or by 'cluster add'); nothing moves until
    'dynamr cluster commit'."""
    _member_change("join", node, target)


@cluster.command("leave")
@click.argument("node")
@cluster_options
def leave(node: str, target: Target) -> None:
    """Stage NODE's leave: once committed, its data moves to the other nodes, then it stops."""
    _member_change("leave", node, target)


@cluster.command("remove")
@click.argument("node")
@cluster_options
def remove(node: str, target: Target) -> None:
    """Stage the removal of NODE, a dead machine: its data is copied again from the other replicas."""
    _member_change("remove", node, target)


@cluster.command("plan")
@click.option("--clear", is_flag=True, help="Forget every staged change.")
@cluster_options
def plan(clear: bool, target: Target) -> None:
    """Show the staged changes and what committing them would move."""
    state, n, vnodes = _admin(target, "unstage" if clear else "show")
    _show_plan(state, vnodes, n)


@cluster.command("commit")
@cluster_options
def commit(target: Target) -> None:
    """Apply the staged changes: data moves to its new owners while the cluster keeps serving."""
    state, _, _ = _admin(target, "commit")
    console.print(f"committed: moving from {', '.join(state.owners)} to {', '.join(state.pending)}; "
                  "'dynamr cluster status' shows the progress", highlight=False)


@cluster.command("add")
@click.option("--dir", "root", type=click.Path(path_type=Path), default=DEFAULT_DIR, show_default=True)
def add(root: Path) -> None:
    """Start one more node beside the local cluster's and stage its join (then 'dynamr cluster commit')."""
    local = LocalCluster(root)
    if not local.exists:
        raise ConfigError(f"no local cluster in {root} (start one with 'dynamr cluster up', or pass --dir)")
    with console.status("starting a node..."):
        node_id = local.add_node()
    host, port = local.address(node_id)
    console.print(f"started {node_id} on {host}:{port}", highlight=False)
    _member_change("join", node_id, resolve_target(None, None, None, root, None))


@cluster.command("repair")
@click.option("--node", "only", default="", help="Only this node exchanges (with each of its peers).")
@cluster_options
def repair(only: str, target: Target) -> None:
    """Run anti-entropy now instead of waiting for its interval: each node compares its hash trees with each
    peer's and repairs what differs (after replacing a disk, say)."""
    with target.client(timeout=600.0) as client:
        nodes = list(client.cluster().nodes)
        if only and only not in nodes:
            raise ConfigError(f"the cluster has no node {only!r} (it has {', '.join(nodes)})")
        total_keys = total_chunks = 0
        for node_id in [only] if only else nodes:
            reply = client.call_node(node_id, m.RunExchange(), timeout=600.0)
            assert isinstance(reply, m.ExchangeReply)
            total_keys += reply.keys
            total_chunks += reply.chunks
            console.print(f"{node_id}: exchanged with {', '.join(reply.peers) or 'no peer (none up)'}; "
                          f"repaired {reply.keys} key(s), {reply.chunks} chunk(s)", highlight=False)
    console.print(f"repaired {total_keys} key(s) and {total_chunks} chunk(s) in all", highlight=False)


def _gigabytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n else "-"


def _local(root: Path, process: str) -> LocalCluster:
    local = LocalCluster(root)
    if not local.exists:
        raise ConfigError(f"no local cluster in {root} (start one with 'dynamr cluster up', or pass --dir)")
    if process not in local.process_ids():
        raise ConfigError(f"the cluster in {root} has no node {process!r} (it has {', '.join(local.process_ids())})")
    return local


@cluster.command("stop")
@click.argument("node")
@click.option("--dir", "root", type=click.Path(path_type=Path), default=DEFAULT_DIR, show_default=True)
def stop_one(node: str, root: Path) -> None:
    """Stop one node (or the coordinator) of the local cluster cleanly; the others keep serving."""
    local = _local(root, node)
    if local.pid(node) is None:
        console.print(f"{node} is not running")
        return
    local.stop_node(node)
    console.print(f"stopped {node}; start it again with: dynamr cluster start {node}", highlight=False)


@cluster.command("start")
@click.argument("node")
@click.option("--dir", "root", type=click.Path(path_type=Path), default=DEFAULT_DIR, show_default=True)
def start_one(node: str, root: Path) -> None:
    """Start one stopped node (or the coordinator) of the local cluster again, with its data."""
    local = _local(root, node)
    if local.pid(node) is not None:
        console.print(f"{node} is already running")
        return
    with console.status(f"starting {node}..."):
        local.start([node])
    host, port = local.address(node)
    console.print(f"started {node} on {host}:{port}", highlight=False)


@cluster.command("down")
@click.option("--purge", is_flag=True, help="Also delete the cluster's directory (all data).")
@click.option("--dir", "root", type=click.Path(path_type=Path), default=DEFAULT_DIR, show_default=True)
def down(purge: bool, root: Path) -> None:
    """Stop the local cluster's nodes cleanly."""
    local = LocalCluster(root)
    if not local.exists:
        console.print(f"no cluster in {root}")
        return
    running = local.running()
    local.stop()
    nodes = [p for p in running if p != COORDINATOR]
    console.print(f"stopped {len(nodes)} node(s)" + (" and the coordinator" if COORDINATOR in running else ""))
    if purge:
        shutil.rmtree(root)
        console.print(f"deleted {root}")
