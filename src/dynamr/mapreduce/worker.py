"""A node's task slots: pull work from the coordinator and run each attempt in a task process.

The protocol with the coordinator is :class:`~dynamr.mapreduce.workerstate.WorkerState` (pure, proven in
the simulator); this is its asyncio shell. Every ``interval`` seconds (and at once when an attempt ends)
the worker polls with its free slots, the attempts it runs with their progress, and the reports not yet
acknowledged; the reply holds new task specs, attempts to kill, and the reports handled.

Task processes (:mod:`~dynamr.mapreduce.taskprocess`) are reused, as the pure
:class:`~dynamr.mapreduce.taskpool.ProcessPool` decides: once a process has run an attempt of a job it
waits for the next attempt of the same job, up to ``reuse`` attempts (a process never serves two
jobs); a spare per free slot (started with the worker and when a slot frees, never while every slot is
busy), imports done, waits for the first attempt of a new job. An attempt whose process reports no
progress for the spec's ``progress_timeout`` is killed and reported failed. Kills named
by the coordinator end the attempt's whole process group, and idle processes of that job with it; a process
that exits or dies has its group killed too (nothing user code started outlives it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections import deque
from pathlib import Path

from dynamr.background import Background
from dynamr.errors import DynamrError
from dynamr.mapreduce import containment
from dynamr.mapreduce.jobrun import job_of
from dynamr.mapreduce.taskoutput import OUTPUT_FILES, remove_output_file
from dynamr.mapreduce.taskpool import ProcessPool, Use, WaitForSpare
from dynamr.mapreduce.taskprocess import FRAME_LIMIT, TaskProcess
from dynamr.mapreduce.workerstate import Kill, Start, WorkerState
from dynamr.mapreduce.zygote import SUPPORTED as ZYGOTE_SUPPORTED
from dynamr.mapreduce.zygote import ForkServer
from dynamr.rpc import messages as m
from dynamr.rpc.transport import Address, Transport

log = logging.getLogger(__name__)

#: seconds an idle task process waits for another attempt of its job before it is let go
IDLE_SECONDS = 20.0


class AttemptProgress:
    """The last progress line of a running attempt, and when it last changed."""

    def __init__(self, now: float) -> None:
        self.line: list[int] | None = None
        self.changed = now

    def update(self, line: list[int], now: float) -> None:
        if line != self.line:
            self.line, self.changed = list(line), now

    @property
    def fraction(self) -> float:
        if self.line is None:
            return -1.0
        done, total = self.line[0], self.line[1]
        return min(1.0, done / total) if total > 0 else -1.0

#: seconds between two checks of running attempts' memory
MEMORY_CHECK = 0.25


def default_memory_limit(slots: int) -> int:
    """The machine's memory shared among the task slots, and at least 1 GiB per task."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        physical = 0
    return max(1 << 30, physical // max(1, slots))


class Worker:
    def __init__(self, node_id: str, coordinator: Address, transport: Transport, *, slots: int,
                 seeds: list[Address], secret: bytes, interval: float = 0.5, scratch_dir: str | None = None,
                 reuse: int = 20, max_rss: int = 512 << 20, tls_ca: str = "", memory_limit: int = 0,
                 zygote: bool = True) -> None:
        self.node_id = node_id
        #: tells the coordinator this process from an earlier one of the same node (a quick restart)
        self.incarnation = os.urandom(8).hex()
        self.state = WorkerState(node_id, self.incarnation, slots)
        self.coordinator = coordinator
        self.transport = transport
        self.slots = max(1, slots)
        self.seeds = seeds
        self.secret = secret
        self.interval = interval
        self.scratch_dir = scratch_dir
        self.reuse = max(1, reuse)
        self.max_rss = max_rss
        self.tls_ca = tls_ca
        #: most resident memory an attempt's processes may hold together, bytes
        self.memory_limit = memory_limit or default_memory_limit(self.slots)
        self._memory_checked = 0.0
        #: the mark every task process of this node carries (its task directory: the same after a restart)
        self.owner = os.path.abspath(scratch_dir) if scratch_dir else f"dynamr-worker-{node_id}-{os.getpid()}"
        #: where task processes are forked from (None: each is a new interpreter)
        self.forks = ForkServer(self.owner, FRAME_LIMIT) if zygote and ZYGOTE_SUPPORTED else None
        #: attempt -> its task process, once it has one
        self.running: dict[str, TaskProcess] = {}
        #: which process runs what (pure); the processes themselves, by key
        self.pool = ProcessPool(self.slots, IDLE_SECONDS)
        self._procs: dict[int, TaskProcess] = {}
        self._next_key = itertools.count(1)
        self.progress: dict[str, AttemptProgress] = {}
        self._timeouts: dict[str, float] = {}
        #: attempt -> its process group, while it runs
        self._groups: dict[str, str] = {}
        #: attempts the coordinator wants killed that had no process yet
        self._doomed: set[str] = set()
        #: attempts waiting for a starting spare, in the pool's order (``ProcessPool.waiting``)
        self._spare_waiters: deque[asyncio.Future[int | None]] = deque()
        #: attempts ended here on purpose: (reason, cause)
        self._killed: dict[str, tuple[str, str]] = {}
        self._wakeup = asyncio.Event()
        self._background = Background(f"worker {node_id}", log)

    async def run(self) -> None:
        """Poll forever; an unexpected error is logged with its traceback and polling goes on."""
        leftovers = containment.kill_marked(self.owner)
        if leftovers:
            log.warning("worker %s: killed %d process(es) an earlier run of this node left behind",
                        self.node_id, leftovers)
        self._remove_output_files()  # an earlier run's, if it was killed
        self._add_spares(self.pool.spares_wanted(time.monotonic()))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.state.next_poll(self.interval))
            self._wakeup.clear()
            try:
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: poll failed unexpectedly; polling goes on", self.node_id)

    async def _poll_once(self) -> None:
        self._housekeeping()
        msg = self.state.poll({a: p.fraction for a, p in self.progress.items()}, hold=self.interval)
        try:
            reply = await self.transport.call(self.coordinator, msg, 5.0 + msg.hold)
        except DynamrError as exc:
            self.state.poll_failed()  # the reports stay and go out again with the next poll
            log.debug("poll of the coordinator failed: %s", exc)
            return
        if not isinstance(reply, m.WorkerHeartbeatReply):
            self.state.poll_failed()
            log.warning("the coordinator answered a poll with %s", type(reply).__name__)
            return
        for action in self.state.replied(reply.seq, reply.assignments, reply.kills, reply.acked, reply.soon,
                                          reply.again):
            if isinstance(action, Kill):
                self.kill(action.attempt)
            elif isinstance(action, Start):
                self._background.spawn(self._run_attempt(action.spec))

    def _housekeeping(self) -> None:
        """Kill attempts that stopped making progress; let long-idle processes go."""
        now = time.monotonic()
        for attempt, progress in list(self.progress.items()):
            timeout = self._timeouts.get(attempt, 0.0)
            if timeout > 0 and now - progress.changed > timeout and attempt in self.running:
                log.warning("attempt %s made no progress for %.0f s: killing it", attempt, timeout)
                self.kill(attempt, f"no progress for {timeout:g} s (read no input, emitted nothing, touched no "
                                   "counter): killed; call self.report_progress() in long work on one record",
                          cause="")
        if now - self._memory_checked >= MEMORY_CHECK:
            self._memory_checked = now
            self._check_memory()
        for key in self.pool.idle_or_spare():
            if not self._procs[key].alive:
                self.pool.gone(key)
                self._procs.pop(key, None)
        for go in self.pool.tick(now):
            self._let_go(go.key)
        self._add_spares(self.pool.spares_wanted(now))

    def _check_memory(self) -> None:
        """Stop an attempt whose processes (the task process and all it started) hold more than the limit."""
        watched = {attempt: proc.proc.pid for attempt, proc in self.running.items()
                   if proc.alive and attempt not in self._killed}
        held = containment.groups_rss(watched.values())
        for attempt, pid in watched.items():
            used = held[pid]
            if used > self.memory_limit:
                mib = self.memory_limit >> 20
                log.warning("attempt %s holds %d MiB, over the %d MiB limit: killing it", attempt, used >> 20, mib)
                self.kill(attempt, f"the task used more than {mib} MiB of memory ({used >> 20} MiB with the "
                                   "processes it started) and was killed; use less memory per task (more reducers, "
                                   "smaller splits) or raise task_memory_limit", cause="")

    # --- task processes ------------------------------------------------------------------------------

    async def _process_for(self, group: str) -> tuple[int, TaskProcess]:
        """The process the pool chooses for an attempt of process group ``group``."""
        while True:
            action = self.pool.acquire(group, time.monotonic())
            chosen: int | None = None
            if isinstance(action, Use):
                chosen = action.key
            elif isinstance(action, WaitForSpare):
                promised: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
                self._spare_waiters.append(promised)
                chosen = await promised
                if chosen is None:  # the spare did not start: ask again
                    continue
            if chosen is not None:
                proc = self._procs[chosen]
                if proc.alive:
                    return chosen, proc
                self.pool.gone(chosen)
                self._procs.pop(chosen, None)
                continue
            key = next(self._next_key)
            try:
                proc = await TaskProcess.start(self.secret, self.owner, key, self.scratch_dir, self.forks)
            except BaseException:
                self.pool.launch_failed()
                raise
            self._procs[key] = proc
            self.pool.started(key, group)
            return key, proc

    def _add_spares(self, count: int) -> None:
        for _ in range(count):
            self._background.spawn(self._add_spare())

    async def _add_spare(self) -> None:
        key = next(self._next_key)
        try:
            proc = await TaskProcess.start(self.secret, self.owner, key, self.scratch_dir, self.forks)
        except OSError:
            if self.pool.spare_failed():
                self._spare_waiters.popleft().set_result(None)
            return
        self._procs[key] = proc
        if self.pool.started(key, None) is not None:  # an attempt was waiting for it
            waiter = self._spare_waiters.popleft()
            if waiter.done():  # it was cancelled (the worker is stopping): nobody takes the process
                self._let_go(key)
            else:
                waiter.set_result(key)

    def _let_go(self, key: int) -> None:
        """Kill an idle or spare process: no attempt to lose, and what user code left behind goes too."""
        self.pool.gone(key)
        proc = self._procs.pop(key, None)
        if proc is not None:
            proc.kill()
            self._background.spawn(proc.wait())

    async def _retire(self, proc: TaskProcess, key: int) -> None:
        """A process that exits (or died) takes whatever user code started with it: its group is killed,
        and anything else carrying its mark."""
        await proc.wait()
        proc.kill_group()
        containment.kill_marked(self.owner, key)

    # --- attempts ------------------------------------------------------------------------------------

    def _remove_output_files(self) -> None:
        """Remove the output files of this worker's task processes (in its task directory, every one there)."""
        for proc in [*self._procs.values(), *self.running.values()]:
            remove_output_file(proc.output_path)
        if self.scratch_dir:
            for path in Path(self.scratch_dir).glob(OUTPUT_FILES):
                remove_output_file(str(path))

    async def _run_attempt(self, spec: m.TaskSpec) -> None:
        attempt = spec.attempt
        spec = dataclasses.replace(spec, seeds=tuple((str(h), int(p)) for h, p in self.seeds),
                                   scratch_dir=self.scratch_dir or "", max_tasks=self.reuse, max_rss=self.max_rss,
                                   tls_ca=self.tls_ca)
        group = self._groups[attempt] = spec.process_group or spec.job
        try:
            key, proc = await self._process_for(group)
        except OSError as exc:
            self._groups.pop(attempt, None)
            self._doomed.discard(attempt)
            self._ended(m.AttemptReport(attempt=attempt, ok=False, error=f"could not start the task process: {exc}"))
            return
        self.running[attempt] = proc
        self.progress[attempt] = progress = AttemptProgress(time.monotonic())
        self._timeouts[attempt] = spec.progress_timeout
        if attempt in self._doomed:
            self._doomed.discard(attempt)
            self.kill(attempt)
        try:
            result = await proc.run(spec, lambda line: progress.update(line, time.monotonic()))
        finally:
            self.running.pop(attempt, None)
            self._groups.pop(attempt, None)
            self.progress.pop(attempt, None)
            self._timeouts.pop(attempt, None)
        killed = self._killed.pop(attempt, None)
        keep = False
        if killed is not None:
            proc.kill()
            report = m.AttemptReport(attempt=attempt, ok=False, error=killed[0], cause=killed[1], output=proc.output())
            self._background.spawn(self._retire(proc, key))
        elif result is None:
            report = await proc.failure(attempt)
            await self._retire(proc, key)
        else:
            report, retiring = result
            if report.attempt != attempt or report.cause not in m.REPORT_CAUSES:
                report = m.AttemptReport(attempt=attempt, ok=False, error="the task process sent a report that is "
                                         f"not for attempt {attempt} or names an unknown cause")
                retiring = True
            keep = not retiring and proc.alive
            if not keep:
                self._background.spawn(self._retire(proc, key))
            elif containment.kill_leftovers(proc.proc.pid, self.owner, key):
                log.info("attempt %s left processes running; they were killed", attempt)  # none outlives it
        if not keep:
            self._procs.pop(key, None)
        for go in self.pool.released(key, keep=keep, now=time.monotonic()):
            self._let_go(go.key)
        self._ended(report)

    def _ended(self, report: m.AttemptReport) -> None:
        self.state.ended(report)
        self._wakeup.set()

    def kill(self, attempt: str, reason: str = "killed at the coordinator's request", cause: str = "killed") -> None:
        """SIGKILL the attempt's whole process group (user code and anything it started); idle processes
        of its job go too."""
        for go in self.pool.kill_group(self._groups.get(attempt) or job_of(attempt)):
            self._let_go(go.key)
        proc = self.running.get(attempt)
        if proc is None:
            self._doomed.add(attempt)
        elif proc.alive:
            self._killed[attempt] = (reason, cause)
            proc.kill()

    async def stop(self) -> None:
        for attempt in list(self.running):
            self.kill(attempt)
        waiting = [self._procs[key] for key in self.pool.idle_or_spare() if key in self._procs]
        for proc in waiting:
            proc.kill()
        for proc in waiting:
            await proc.wait()
        for task in list(self._background.tasks):  # spares being started among them
            task.cancel()
        for task in list(self._background.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for proc in self._procs.values():  # what started meanwhile
            proc.kill()
        if self.forks is not None:
            await self.forks.close()
        containment.kill_marked(self.owner)  # also what escaped its group but kept the mark
        self._remove_output_files()  # last: no process is left to make one

