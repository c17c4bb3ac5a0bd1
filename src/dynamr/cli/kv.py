"""``dynamr kv``: get, put and delete keys, list them, and show where a key lives."""

from __future__ import annotations

import base64

import click
from rich.table import Table

from dynamr.cli.common import Target, cluster_options, console
from dynamr.errors import DynamrError
from dynamr.rpc import messages as m
from dynamr.store import versions


def _show(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


@click.group()
def kv() -> None:
    """Read and write keys in the store."""


@kv.command("put")
@click.argument("key")
@click.argument("value")
@click.option("--context", default="", help="Causal context printed by 'kv get' (resolves siblings).")
@click.option("--concurrent", is_flag=True,
              help="Write without any context: the value becomes a sibling of what is there.")
@click.option("-w", "w", type=click.IntRange(min=0), default=0, help="Write quorum W (default: the cluster's).")
@cluster_options
def put(key: str, value: str, context: str, concurrent: bool, w: int, target: Target) -> None:
    """Write VALUE under KEY, replacing what a read sees now (unless --context or --concurrent)."""
    with target.client() as client:
        if context:
            ctx = bytes.fromhex(context)
        else:
            ctx = b"" if concurrent else client.get(key).context
        client.put(key, value.encode(), context=ctx, w=w)
    console.print(f"stored {key}")


@kv.command("get")
@click.argument("key")
@click.option("-r", "r", type=click.IntRange(min=0), default=0, help="Read quorum R (default: the cluster's).")
@cluster_options
def get(key: str, r: int, target: Target) -> None:
    """Print the value of KEY (every sibling, when concurrent writes left several)."""
    with target.client() as client:
        result = client.get(key, r=r)
    if not result.values:
        console.print(f"[yellow]{key}: not found[/]", highlight=False)
        raise SystemExit(1)
    if len(result.values) == 1:
        click.echo(_show(result.values[0]))
        return
    console.print(f"{key} has {len(result.values)} siblings (concurrent writes):", highlight=False)
    for i, value in enumerate(result.values, 1):
        click.echo(f"  [{i}] {_show(value)}")
    console.print(f"resolve with: dynamr kv put {key} VALUE --context {result.context.hex()}",
                  highlight=False)


@kv.command("delete")
@click.argument("key")
@click.option("--context", default="", help="Causal context printed by 'kv get'.")
@cluster_options
def delete(key: str, context: str, target: Target) -> None:
    """Delete KEY (reads it first, so the delete covers what is there now)."""
    with target.client() as client:
        ctx = bytes.fromhex(context) if context else client.get(key).context
        client.delete(key, context=ctx)
    console.print(f"deleted {key}")


@kv.command("keys")
@click.argument("prefix", default="")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many keys per node.")
@cluster_options
def keys(prefix: str, limit: int, target: Target) -> None:
    """List live keys starting with PREFIX, with the nodes holding a copy (scans every node: for admins)."""
    with target.client() as client:
        by_node = client.keys_on_nodes(prefix, limit)
    holders: dict[bytes, list[str]] = {}
    for node, node_keys in sorted(by_node.items()):
        for key in node_keys:
            holders.setdefault(key, []).append(node)
    for key in sorted(holders):
        click.echo(f"{_show(key)}\t{','.join(holders[key])}")
    console.print(f"{len(holders)} key(s)", highlight=False)


@kv.command("where")
@click.argument("key")
@cluster_options
def where(key: str, target: Target) -> None:
    """Show which nodes hold KEY: its N replicas in preference order, then any other node keeping a copy
    (a hint for a replica that was down), each with the versions it holds."""
    with target.client() as client:
        view = client.cluster()
        walk = view.ring.walk(key.encode())
        held: dict[str, tuple[versions.Sibling, ...] | DynamrError] = {}
        for node_id in walk:
            try:
                reply = client.call_node(node_id, m.ReplicaRead(key=key.encode()))
            except DynamrError as exc:
                held[node_id] = exc
                continue
            assert isinstance(reply, m.ReplicaState)
            held[node_id] = versions.decode_state(reply.state)
    table = Table(title=f"key {key}")
    for col in ("node", "role", "holds"):
        table.add_column(col)
    copies = 0
    for rank, node_id in enumerate(walk):
        role = f"replica {rank + 1} of {view.n}" if rank < view.n else "fallback"
        state = held[node_id]
        if isinstance(state, DynamrError):
            table.add_row(node_id, role, f"[red]unreachable[/] ({state})")
            continue
        if not state and rank >= view.n:
            continue
        copies += bool(state) and rank < view.n
        table.add_row(node_id, role, _versions(state))
    console.print(table)
    console.print(f"{copies} of {view.n} replicas hold the key", highlight=False)


def _versions(state: tuple[versions.Sibling, ...]) -> str:
    if not state:
        return "[yellow]nothing[/]"
    live = sum(1 for s in state if s.value is not None)
    dots = ", ".join(f"{s.actor}:{s.counter}" for s in state)
    kind = "deleted" if not live else f"{live} value{'s' if live > 1 else ''}"
    return f"{kind} (versions {dots})"
