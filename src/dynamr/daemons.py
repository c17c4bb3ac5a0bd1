"""The processes dynamr runs, composed from its layers: a node and the coordinator.

A node (:func:`run_node`, what ``dynamr node start`` calls) is a store member (LMDB engine on disk, TCP
server), the file layer's chunk collector, and, when the cluster has a coordinator, a MapReduce worker. The
coordinator (:func:`run_coordinator`) is the MapReduce master over a store client. This module sits above
``store/``, ``files/`` and ``mapreduce/`` so that none of them imports another's daemons. A node opens its
engine in its own process (never across a fork), listens only on the address the cluster file gives it,
and stops cleanly on SIGTERM or SIGINT (a clean stop is recorded so the next start keeps the node's epoch).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dynamr.config import ClusterSpec, NodeAddress, StoreSettings, check_listen
from dynamr.errors import ConfigError
from dynamr.files.gc import run_collector
from dynamr.rpc import tls
from dynamr.rpc.client import TcpTransport
from dynamr.rpc.server import RpcServer
from dynamr.rpc.tls import TlsFiles
from dynamr.store.blobs import DirectoryBlobStore
from dynamr.store.engine import LmdbEngine
from dynamr.store.node import StoreNode

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from dynamr.mapreduce.coordinator import Coordinator
    from dynamr.rpc.server import Dispatcher
    from dynamr.web.http import HttpServer

log = logging.getLogger(__name__)


#: the umask the user started a daemon with, handed to task processes so that job output keeps it
USER_UMASK = "DYNAMR_USER_UMASK"


def private_files(data_dir: Path | None = None) -> None:
    """Everything this process creates from now on is readable by its owner only (umask 077), whatever
    the umask it was started with; its data directory too, even if it existed already."""
    previous = os.umask(0o077)
    os.environ.setdefault(USER_UMASK, f"{previous:o}")
    if data_dir is not None:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)


#: the data directories this process holds (an open, locked file each: the kernel releases it when the
#: process ends, however it ends)
_HELD: dict[Path, int] = {}


def hold_data_dir(data_dir: Path) -> None:
    """Take ``data_dir`` for this process alone: a second node or coordinator started on it (the same
    command twice, two ids given one directory) would serve the same data under two identities, or recover
    and clean up jobs the first one runs. Raises :class:`ConfigError` naming the holder."""
    path = data_dir.resolve()
    if path in _HELD:
        return
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(f"data directory {data_dir} is in use by another dynamr process (pid {holder}): stop "
                          "it first, or give this process a data directory of its own") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[path] = fd


def setup_logging(level: str, node_id: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s [{node_id}] %(name)s: %(message)s")


def pin_malloc_thresholds() -> None:
    """Keep large buffers (chunks, LMDB overflow pages) out of the heap on glibc.

    glibc raises its mmap threshold each time a large mmapped block is freed, after which multi-MiB
    buffers come from the heap and stay there: a node moving gigabytes then grows its resident memory
    with every file. Setting the thresholds explicitly turns that adjustment off.
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 256 * 1024)
        libc.mallopt(m_trim_threshold, 1024 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to pin


def install_event_loop_policy() -> None:
    """Use uvloop when it is installed: about twice the RPC rate of the default loop."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _watch_parent(stop: asyncio.Event, parent: int, interval: float = 0.5) -> None:
    """Set ``stop`` once this process's parent is no longer ``parent`` (it exited and we were re-parented).
    ``parent`` is known from the start, so a parent that died before this watch began is noticed at once."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("the process that started this one (pid %d) exited; stopping", parent)
            stop.set()
            return
        await asyncio.sleep(interval)


def _ignore() -> None:
    return None


async def wait_for_stop(parent: int | None, stop: asyncio.Event | None = None) -> None:
    """Return on SIGTERM or SIGINT, when the parent process ``parent`` is gone (if given), or when ``stop``
    is set."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watchdog = asyncio.create_task(_watch_parent(stop, parent)) if parent is not None else None
    try:
        await stop.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C stops at once
        with contextlib.suppress(Exception):  # a repeated SIGTERM must not cut the clean-up short (task
            loop.add_signal_handler(signal.SIGTERM, _ignore)  # processes, their files): SIGKILL still works


async def serve_node(spec: ClusterSpec, node_id: str, data_dir: Path, secret: bytes, *,
                     tls_files: TlsFiles | None = None, parent: int | None = None,
                     join: tuple[str, int] | None = None, listen: NodeAddress | None = None) -> None:
    """Run a node until it is stopped (or has left the cluster). ``join``: a member's address to ask for
    membership, unless this node's data directory already holds a cluster state; ``listen``: this node's
    address when the cluster file does not list it."""
    from dynamr.store.members import load_state, request_join
    from dynamr.web.sources import node_source

    settings = spec.settings
    server_ssl, client_ssl = _contexts(tls_files)
    me = listen or spec.node(node_id)
    check_listen(me, settings)
    engine = LmdbEngine(data_dir / "lmdb", map_size=settings.map_size, fsync=settings.fsync)
    transport = TcpTransport(secret, frame_bytes=settings.frame_bytes,
                             max_message_bytes=settings.max_message_bytes, ssl_context=client_ssl)
    blobs = DirectoryBlobStore(data_dir / "chunks", fsync=settings.fsync == "always")
    state = None
    if join is not None and load_state(engine) is None:
        state = await request_join(transport, join, me, settings)
        log.info("node %s registered with the cluster of %s:%d as joining; stage and commit its join with "
                 "'dynamr cluster join %s' and 'dynamr cluster commit'", node_id, join[0], join[1], node_id)
    node = StoreNode(spec, node_id, engine, transport, blobs=blobs, state=state, address=me.address)
    server = RpcServer(node.dispatcher, secret, frame_bytes=settings.frame_bytes,
                       max_message_bytes=settings.max_message_bytes, ssl_context=server_ssl,
                       max_buffered_bytes=settings.max_buffered_bytes, max_connections=settings.max_connections)
    await server.start(me.host, me.port)
    node.start()
    web = await _web(me, settings, secret, node.dispatcher, functools.partial(node_source, node))
    collector = asyncio.create_task(run_collector(node))
    worker = None
    coordinator = node.members.state.coordinator
    if coordinator:
        from dynamr.mapreduce.worker import Worker

        host, _, port = coordinator.rpartition(":")
        worker = Worker(node_id, (host, int(port)), transport,
                        slots=settings.task_slots or os.cpu_count() or 1,
                        seeds=[me.address, *[a for n, a in node.addresses.items() if n != node_id]], secret=secret,
                        interval=settings.worker_heartbeat, scratch_dir=str(data_dir / "tasks"),
                        reuse=settings.task_process_reuse, max_rss=settings.task_process_max_rss,
                        zygote=settings.task_zygote,
                        tls_ca=str(tls_files.ca.resolve()) if tls_files else "",
                        memory_limit=settings.task_memory_limit)
        (data_dir / "tasks").mkdir(parents=True, exist_ok=True)
        worker_task = asyncio.create_task(worker.run())
    log.info("node %s (epoch %s) listening on %s:%d", node_id, node.replica.epoch, me.host, server.port)
    try:
        await wait_for_stop(parent, node.members.departed)
    finally:
        log.info("node %s stopping", node_id)
        collector.cancel()
        if worker is not None:
            worker_task.cancel()
            await worker.stop()
        if web is not None:
            await web.close()
        await server.close()
        await transport.close()
        await node.stop()
        log.info("node %s stopped cleanly", node_id)


def run_node(spec: ClusterSpec, node_id: str, data_dir: Path, secret: bytes, *,
             tls_files: TlsFiles | None = None, parent: int | None = None,
             join: tuple[str, int] | None = None, listen: NodeAddress | None = None) -> None:
    pin_malloc_thresholds()
    install_event_loop_policy()
    private_files(data_dir)
    hold_data_dir(data_dir)
    asyncio.run(serve_node(spec, node_id, data_dir, secret, tls_files=tls_files, parent=parent,
                           join=join, listen=listen))


async def serve_coordinator(spec: ClusterSpec, secret: bytes, *, data_dir: Path | None = None,
                            tls_files: TlsFiles | None = None, parent: int | None = None,
                            local_jobs: bool = False) -> None:
    from dynamr.mapreduce.coordinator import Coordinator
    from dynamr.store.client import AsyncClient
    from dynamr.web.sources import coordinator_source

    if spec.coordinator is None:
        raise ConfigError("the cluster file names no coordinator address")
    settings = spec.settings
    server_ssl, client_ssl = _contexts(tls_files)
    check_listen(spec.coordinator, settings)
    client = AsyncClient([n.address for n in spec.nodes], secret, timeout=settings.request_timeout * 2,
                         ssl_context=client_ssl)
    coordinator = Coordinator(client, settings, data_dir=data_dir, local_jobs=local_jobs,
                              address=f"{spec.coordinator.host}:{spec.coordinator.port}")
    if data_dir is None:
        log.warning("the coordinator has no --data-dir: job state will not survive a restart")
    server = RpcServer(coordinator.dispatcher, secret, frame_bytes=settings.frame_bytes,
                       max_message_bytes=settings.max_message_bytes, ssl_context=server_ssl,
                       max_buffered_bytes=settings.max_buffered_bytes, max_connections=settings.max_connections)
    # the address first (a second coordinator at it stops here, before recovering anything), then the
    # claims, then the jobs; requests wait in the backlog until the jobs are back
    await server.start(spec.coordinator.host, spec.coordinator.port, serve=False)
    try:
        await coordinator.claims.check()
        await coordinator.recover()
    except BaseException:
        await server.close()
        raise
    await server.serve()
    coordinator.start()
    web = await _web(spec.coordinator, settings, secret, coordinator.dispatcher,
                     functools.partial(coordinator_source, coordinator), coordinator)
    log.info("coordinator listening on %s:%d", spec.coordinator.host, server.port)
    try:
        await wait_for_stop(parent)
    finally:
        if web is not None:
            await web.close()
        await server.close()
        await coordinator.stop()
        await client.close()
        log.info("coordinator stopped cleanly")


async def _web(address: NodeAddress, settings: StoreSettings, secret: bytes, dispatcher: Dispatcher,
               source: Callable[[], Iterable[Metric]], coordinator: Coordinator | None = None) -> HttpServer | None:
    """Serve ``/metrics`` (and, for the coordinator, the dashboard) on the address's ``http_port``, if set."""
    if not address.http_port:
        return None
    from dynamr.metrics import Metrics
    from dynamr.web.dashboard import Dashboard
    from dynamr.web.http import HttpServer, make_app

    metrics = Metrics(address.node_id)
    dispatcher.stats = metrics.requests
    metrics.add_source(source)
    app = make_app(secret, metrics)
    dashboard = Dashboard(coordinator, app) if coordinator is not None else None
    server = HttpServer(app, on_close=dashboard.close if dashboard is not None else None)
    await server.start(address, settings)
    if coordinator is not None:
        coordinator.web_address = (address.host, server.port)
    return server


def run_coordinator(spec: ClusterSpec, secret: bytes, *, data_dir: Path | None = None,
                    tls_files: TlsFiles | None = None, parent: int | None = None,
                    local_jobs: bool = False) -> None:
    install_event_loop_policy()
    private_files(data_dir)
    if data_dir is not None:
        hold_data_dir(data_dir)
    asyncio.run(serve_coordinator(spec, secret, data_dir=data_dir, tls_files=tls_files,
                                  parent=parent, local_jobs=local_jobs))


def _contexts(files: TlsFiles | None) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """(server context, client context) for a daemon, both or neither."""
    if files is None:
        return None, None
    return tls.server_context(files.cert, files.key), tls.client_context(files.ca)
