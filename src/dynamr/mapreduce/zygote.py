"""Task processes forked from a warm parent (a *zygote*), instead of a fresh interpreter each.

A task process started as ``python -m dynamr.mapreduce.child`` spends 0.2 to 0.4 s of CPU importing
before it runs anything: the interpreter, asyncio, the store client, and the message dataclasses, whose
methods ``dataclasses`` makes with ``exec`` at every import (bytecode caching does not save that). A
worker starts one per slot per job, and as many spares after it. So a worker keeps one zygote: a process
that has imported everything a task needs, then forks a task process on request, in a few milliseconds
(the model of multiprocessing's forkserver and of Android's zygote).

- The zygote is ``python -m dynamr.mapreduce.zygote FD``, started by the worker with the node's
  environment plus the worker's owner mark (:mod:`~dynamr.mapreduce.containment`), so a node restarted
  after ``kill -9`` finds it and its children. It is single-threaded, imports the task modules, freezes
  them out of the garbage collector (their pages stay shared with the children), and serves requests on
  a Unix datagram socket: each is the process's environment and its stdin, stdout and stderr as file
  descriptors (``SCM_RIGHTS``). It answers with the pid, and later with the exit code once it has
  reaped the process. It exits when the worker's end of the socket closes, and dies with the node.
- A forked task process starts a session of its own, takes the three descriptors as 0, 1 and 2, sets
  its environment and runs :func:`dynamr.mapreduce.child.main`, exactly as an exec'd one does.
- The owner mark must be visible in ``/proc/<pid>/environ``, which shows the environment a process was
  exec'd with, not what it set later. The zygote is exec'd with a mark padded to a fixed width; a task
  process overwrites those bytes in place with its own mark, padded with NULs (the technique
  ``setproctitle`` uses for the command line). What it forks without exec keeps that mark, as it would
  from an exec'd task process.
- Node side, :class:`ForkServer` starts the zygote on first use and gives :class:`ForkedProcess`
  objects, which look to :class:`~dynamr.mapreduce.taskprocess.TaskProcess` like asyncio's processes
  (``pid``, ``returncode``, ``wait()``, the three streams). If the zygote dies, its task processes die
  with it (they ask the kernel for ``SIGKILL`` when their parent dies), their attempts fail and are
  retried, and the next request starts a new zygote.

Linux only (``SOCK_SEQPACKET``, ``/proc``); elsewhere the worker execs each task process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import logging
import os
import select
import signal
import socket
import sys
import traceback
from collections import deque
from typing import Any

import msgpack

from dynamr.mapreduce import containment

#: messages from the zygote: ready (imports done), a process started, a process exited, a fork failed
READY, STARTED, EXITED, FAILED = 0, 1, 2, 3
#: room in the zygote's owner mark for a task process's own (the owner plus ``#`` and a number)
MARK_ROOM = 40
#: what a task imports, done once in the zygote (the dataflow stage module brings cloudpickle)
PRELOAD = ("dynamr.mapreduce.child", "dynamr.mapreduce.tasks", "dynamr.mapreduce.shuffle",
           "dynamr.mapreduce.compressed", "dynamr.mapreduce.loader", "dynamr.dataflow.stage")
SUPPORTED = sys.platform.startswith("linux") and hasattr(socket, "send_fds")
#: seconds a zygote may take to import (a busy machine), and before one that failed is tried again
READY_WITHIN = 60.0
RETRY_AFTER = 60.0

log = logging.getLogger(__name__)


def zygote_mark(owner: str) -> str:
    """The zygote's owner mark: the owner's prefix, then room for any task process's mark."""
    return containment.mark_for(owner, 0) + "_" * MARK_ROOM


# --- the zygote process ------------------------------------------------------------------------------------

def _send(sock: socket.socket, *message: Any) -> None:
    with contextlib.suppress(OSError):
        sock.send(msgpack.packb(list(message)))


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, EXITED, pid, os.waitstatus_to_exitcode(status))


def _set_mark_in_place(mark: str) -> None:
    """Write this process's owner mark over the zygote's in the environment block it was exec'd with (so
    /proc shows it), NUL-padded; then into ``os.environ`` for what it execs."""
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_void_p
    where = libc.getenv(containment.OWNER.encode())
    room = len(os.environ.get(containment.OWNER, ""))
    data = mark.encode()
    if where and len(data) <= room:
        ctypes.memmove(where, data + b"\0" * (room - len(data)), room)
    os.environ[containment.OWNER] = mark


def _become_task(env: dict[str, str], fds: list[int], sock: socket.socket, wakeup: tuple[int, int],
                 in_session: int) -> int:
    """In the forked child: become a task process, run it, and return its exit code."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock.close()
    for fd in wakeup:
        os.close(fd)
    os.setsid()
    os.close(in_session)  # (the zygote reports the pid only now: a kill of the group at once reaches it)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    mark = env.pop(containment.OWNER, "")
    os.environ.update(env)
    if mark:
        _set_mark_in_place(mark)
    from dynamr.mapreduce import child

    return child.main()


def _fork(sock: socket.socket, env: dict[str, str], fds: list[int], wakeup: tuple[int, int]) -> None:
    try:
        in_session, child_in_session = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(in_session)
            os.close(child_in_session)
            raise
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        _send(sock, FAILED, str(exc))
        return
    if pid == 0:
        code = 1
        try:
            os.close(in_session)
            code = _become_task(env, fds, sock, wakeup, child_in_session)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                import atexit

                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    for fd in fds:
        os.close(fd)
    # wait until the child is in a session of its own (its end closed; or it died): a worker that kills the
    # group as soon as it learns the pid must not find no such group and lose the kill
    os.close(child_in_session)
    with contextlib.suppress(OSError):
        os.read(in_session, 1)
    os.close(in_session)
    _send(sock, STARTED, pid)


def serve(fd: int) -> None:
    """The zygote's loop: fork a task process per request, report exits, end when the worker goes."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    from dynamr.mapreduce.child import die_with_parent

    die_with_parent()
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # (a module of an optional part left out)
            importlib.import_module(name)
    gc.collect()
    gc.freeze()  # the imported objects stay out of collections, so their pages stay shared after forks
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _send(sock, READY)
    while True:
        readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _reap(sock)
        if sock.fileno() in readable:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
            except OSError:
                return
            if not data:
                return  # the worker closed its end: it is stopping, or gone
            try:
                env = {str(k): str(v) for k, v in msgpack.unpackb(data, raw=False)}
            except (ValueError, TypeError) as exc:
                for received in fds:
                    os.close(received)
                _send(sock, FAILED, f"a malformed request: {exc}")
                continue
            if len(fds) != 3:
                for received in fds:
                    os.close(received)
                _send(sock, FAILED, f"a request with {len(fds)} file descriptors, not 3")
                continue
            _fork(sock, env, fds, (wake_r, wake_w))


# --- the worker's side -------------------------------------------------------------------------------------

class ForkedProcess:
    """A task process the zygote forked, with the parts of ``asyncio.subprocess.Process`` the worker uses."""

    def __init__(self, pid: int, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader,
                 stderr: asyncio.StreamReader, ended: asyncio.Future[int]) -> None:
        self.pid = pid
        self.stdin: asyncio.StreamWriter | None = stdin
        self.stdout: asyncio.StreamReader | None = stdout
        self.stderr: asyncio.StreamReader | None = stderr
        self.returncode: int | None = None
        self._ended = ended
        ended.add_done_callback(self._set_code)

    def _set_code(self, ended: asyncio.Future[int]) -> None:
        self.returncode = -signal.SIGKILL if ended.cancelled() else ended.result()

    async def wait(self) -> int:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._ended)
        assert self.returncode is not None
        return self.returncode


class ForkServer:
    """A worker's zygote: started on first use, again after it dies; :meth:`close` ends it."""

    def __init__(self, owner: str, limit: int) -> None:
        self.owner = owner
        #: the stream limit of the processes' stdout (their largest frame)
        self.limit = limit
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        #: a future per request sent, in order: (pid, the future of its exit code)
        self._starting: deque[asyncio.Future[tuple[int, asyncio.Future[int]]]] = deque()
        #: pid -> the future of its exit code, from its start until the zygote reports its exit
        self._running: dict[int, asyncio.Future[int]] = {}
        self._lock = asyncio.Lock()
        #: False after a failure, until a process is forked again (so a broken zygote is logged once)
        self.healthy = True
        #: after a zygote failed to start, none is tried again before this time (loop clock)
        self._retry_at = 0.0

    async def _ensure(self) -> socket.socket:
        if self._sock is not None and self._reader is not None and not self._reader.done():
            return self._sock
        await self._stop_zygote()
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            raise OSError("the task zygote failed to start a moment ago")
        self._retry_at = loop.time() + RETRY_AFTER  # cleared once it is ready
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            env = {**os.environ, containment.OWNER: zygote_mark(self.owner)}
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "dynamr.mapreduce.zygote", str(theirs.fileno()), pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, env=env, start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        try:
            ready = msgpack.unpackb(await asyncio.wait_for(loop.sock_recv(ours, 1 << 16), READY_WITHIN), raw=False)
        except BaseException:
            ours.close()
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            raise
        if not ready or ready[0] != READY:
            ours.close()
            raise OSError("the task zygote did not start")
        self._sock = ours
        self._retry_at = 0.0
        self._reader = asyncio.create_task(self._read(ours))
        return ours

    async def _read(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await loop.sock_recv(sock, 1 << 16):
                message = msgpack.unpackb(data, raw=False)
                if message[0] == STARTED:  # (its exit may be the next message: it is waited for from here)
                    pid, ended = int(message[1]), loop.create_future()
                    self._running[pid] = ended
                    waiter = self._starting.popleft()
                    if not waiter.done():
                        waiter.set_result((pid, ended))
                elif message[0] == FAILED:
                    waiter = self._starting.popleft()
                    if not waiter.done():
                        waiter.set_exception(OSError(f"the task zygote could not fork: {message[1]}"))
                elif message[0] == EXITED:
                    pid = int(message[1])
                    if pid in self._running:
                        ended = self._running.pop(pid)
                        if not ended.done():
                            ended.set_result(int(message[2]))
        except (OSError, ValueError, IndexError):
            pass
        finally:
            self._lost()

    def _lost(self) -> None:
        """The zygote is gone: its task processes die with it (they asked for SIGKILL when it dies);
        make sure, and end every wait."""
        for waiter in self._starting:
            if not waiter.done():
                waiter.set_exception(OSError("the task zygote exited"))
        self._starting.clear()
        for pid, ended in self._running.items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if not ended.done():
                ended.set_result(-signal.SIGKILL)
        self._running.clear()

    async def spawn(self, env: dict[str, str]) -> ForkedProcess:
        """Fork a task process with ``env`` added to the zygote's environment."""
        loop = asyncio.get_running_loop()
        pipes = [os.pipe() for _ in range(3)]  # (read, write) each: stdin, stdout, stderr
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        ours = [pipes[0][1], pipes[1][0], pipes[2][0]]
        try:
            async with self._lock:  # one request at a time: answers come in order
                sock = await self._ensure()
                started: asyncio.Future[tuple[int, asyncio.Future[int]]] = loop.create_future()
                self._starting.append(started)
                payload = msgpack.packb(sorted(env.items()))
                while True:
                    try:
                        socket.send_fds(sock, [payload], theirs)
                        break
                    except BlockingIOError:
                        await _writable(loop, sock)
            pid, ended = await started
            self.healthy = True
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        return await _attach(loop, pid, ours, self.limit, ended)

    async def _stop_zygote(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            with contextlib.suppress(Exception):
                await self._proc.wait()
            self._proc = None

    def failed(self, exc: OSError) -> None:
        """The zygote could not give a process (the caller execs one instead): logged, once per failure
        after a success."""
        if self.healthy:
            log.warning("task zygote of %s failed (%s): starting task processes without it", self.owner, exc)
        self.healthy = False

    async def close(self) -> None:
        """End the zygote (the task processes it forked die with it)."""
        await self._stop_zygote()
        self._lost()


async def _writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def now_writable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(sock, now_writable)
    try:
        await ready
    finally:
        loop.remove_writer(sock)


class _PipeReaderProtocol(asyncio.StreamReaderProtocol):
    """A stream reader's protocol that lets its pipe close at its end. ``StreamReaderProtocol`` asks to keep
    the transport open at EOF (a socket may still write); asyncio's own pipe transport closes anyway, but
    uvloop's (the nodes' loop) does as it is asked, and kept two descriptors open per task process."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False


async def _attach(loop: asyncio.AbstractEventLoop, pid: int, fds: list[int], limit: int,
                  ended: asyncio.Future[int]) -> ForkedProcess:
    """The worker's streams over a forked process's stdin, stdout and stderr (``fds``, the worker's ends).
    If that fails or is cancelled (the worker stopping), the process is killed and its pipes closed: none
    is left that nobody owns. A pipe handed to asyncio is asyncio's to close, even when that call fails."""
    files = [os.fdopen(fds[0], "wb", 0), os.fdopen(fds[1], "rb", 0), os.fdopen(fds[2], "rb", 0)]
    transports: list[asyncio.BaseTransport] = []
    handed = 0
    try:
        handed = 1
        writing, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, files[0])
        transports.append(writing)
        stdin = asyncio.StreamWriter(writing, protocol, None, loop)
        readers = []
        for file, size in ((files[1], limit), (files[2], 1 << 16)):
            reader = asyncio.StreamReader(limit=size, loop=loop)
            handed += 1
            reading, _ = await loop.connect_read_pipe(functools.partial(_PipeReaderProtocol, reader, loop=loop), file)
            transports.append(reading)
            readers.append(reader)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        for made in transports:
            made.close()
        for file in files[handed:]:
            file.close()
        raise
    return ForkedProcess(pid, stdin, readers[0], readers[1], ended)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
