"""The coordinator's asyncio shell: RPC handlers, a ticker, and the effects the core asks for.

All decisions are taken by :class:`~dynamr.mapreduce.control.CoordinatorCore` (pure, proven by the
simulator in ``tests/sim``). This layer turns requests into events, carries out the instructions (SQLite
writes at once; commit records, deletions and a job's cleanup as background tasks whose outcome comes back
as an event), and answers. The core is only ever called from the event loop's thread, one event at a time.

Before a job is accepted, the shell checks what only I/O can tell (the output must not exist, the inputs
must), and that the plan touches no path outside what this coordinator was configured to allow: local
input and output paths only with ``local_jobs`` (the embedded run), local intermediate data only inside its
own data directory.

A restarted coordinator (:meth:`Coordinator.recover`) rebuilds each unfinished job from its stored plan,
looks up the commit records in the store, adopts attempts that nodes still run, and finishes the cleanup
of jobs that had ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

from dynamr.background import Background, each_bounded
from dynamr.config import StoreSettings
from dynamr.errors import BadRequestError, BusyError, DataLostError, DynamrError, NotFoundError
from dynamr.files.client import FileSystem
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce import protocol as p
from dynamr.mapreduce import restart
from dynamr.mapreduce.claims import ClaimKeeper, claim_period
from dynamr.mapreduce.control import CoordinatorCore
from dynamr.mapreduce.corestate import CoreSettings
from dynamr.mapreduce.janitor import Janitor
from dynamr.mapreduce.jobplan import check_plan, dump_plan, load_plan
from dynamr.mapreduce.jobrun import ENDED, JobPlan, shuffle_bytes, splits_of, summary_of, task_of
from dynamr.mapreduce.jobstore import JobStore
from dynamr.mapreduce.splits import Split
from dynamr.mapreduce.workerstate import keepable
from dynamr.rpc import messages as m
from dynamr.rpc.server import Dispatcher
from dynamr.store.client import AsyncClient

log = logging.getLogger(__name__)

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TICK = 0.25
#: bytes of output and tracebacks one TaskLogsReply carries at most (more: ask for one task)
LOGS_REPLY_BYTES = 8 << 20
#: the longest a status request may wait for its job to end (JobStatus.wait)
MAX_STATUS_WAIT = 30.0
#: store calls a job's submission keeps in flight at once (checking and locating its input files)
STORE_CALLS_AT_ONCE = 32
#: the longest a worker may ask the coordinator to keep its poll (WorkerHeartbeat.hold)
MAX_POLL_HOLD = 30.0
#: instructions after which a job's state as a status request sees it may have changed
_JOB_CHANGES = (p.PersistStarted, p.PersistEnded, p.PersistFinalized, p.PersistForgotten)


def refused(ins: p.Refused) -> BadRequestError:
    """The error a refused request is answered with ("busy": it can be done shortly)."""
    return (BusyError if ins.busy else BadRequestError)(ins.message)


def check_job_name(name: str) -> None:
    if not JOB_NAME.match(name):
        raise BadRequestError(f"job name {name!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a "
                              "letter or digit")


def confined(path: str, root: str) -> bool:
    """Whether ``path`` lies inside ``root`` (both absolute, no ``..``)."""
    try:
        PurePosixPath(path).relative_to(root)
    except ValueError:
        return False
    return ".." not in PurePosixPath(path).parts


class Coordinator:
    def __init__(self, client: AsyncClient, settings: StoreSettings | None = None, *,
                 data_dir: Path | None = None, local_jobs: bool = False, address: str = "") -> None:
        settings = settings or StoreSettings()
        self.client = client
        self.fs = FileSystem(client)
        self.data_dir = data_dir.resolve() if data_dir is not None else None
        self.local_jobs = local_jobs
        self.store = JobStore(data_dir)
        self.incarnation = self.store.next_incarnation()
        self.core = CoordinatorCore(CoreSettings.from_settings(settings), incarnation=self.incarnation,
                                    wall_offset=time.time() - time.monotonic())
        self.dispatcher = Dispatcher("coordinator")
        #: where the dashboard is served (host, port), once it is
        self.web_address: tuple[str, int] = ("", 0)
        #: attempts that ended since this coordinator started, by (map or reduce, outcome)
        self.attempt_outcomes: Counter[tuple[str, str]] = Counter()
        #: map output bytes written for reduces by the jobs finalized since this coordinator started
        self.shuffle_bytes_done = 0
        for cls, handler in ((m.Ping, self._on_ping), (m.SubmitJob, self._on_submit), (m.RunJob, self._on_run),
                             (m.JobStatus, self._on_status), (m.ListJobs, self._on_list),
                             (m.WorkerHeartbeat, self._on_heartbeat), (m.KillJob, self._on_kill),
                             (m.DeleteJob, self._on_delete), (m.TaskLogs, self._on_logs),
                             (m.WebAddress, self._on_web_address)):
            self.dispatcher.register(cls, handler)
        self._background = Background("coordinator", log)
        #: set (and replaced) whenever a job starts, ends or is forgotten: wakes status requests that wait
        self._job_changed = asyncio.Event()
        #: set (and replaced) after every event the core handles: held polls look again
        self._core_changed = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        #: this coordinator's claim on the store; ``claims.rivals``: other coordinators using it now
        self.claims = ClaimKeeper(client, self.store.identity(), address,
                                  claim_period(settings.job_janitor_interval))
        self._claimer: asyncio.Task[None] | None = None
        self.janitor = Janitor(client, self.fs, self.core, self.claims, settings.job_janitor_interval)
        self._janitor: asyncio.Task[None] | None = None
        #: the effect carried out for each kind of instruction (persisting is synchronous)
        self._effects: dict[type[Any], Callable[[Any], None]] = {
            p.PersistJob: lambda i: self.store.add_job(i.name, dump_plan(i.plan), "created", i.created),
            p.PersistStarted: self._persist_started,
            p.PersistEnded: lambda i: self.store.job_ended(i.name, i.state, i.ended, i.error, i.status),
            p.PersistFinalized: self._persist_finalized,
            p.PersistSwept: lambda i: self.store.job_swept(i.name),
            p.PersistForgotten: lambda i: self.store.forget(i.name),
            p.PersistAttempt: lambda i: self.store.attempt_started(i.job, i.task, i.attempt, i.node, i.started),
            p.PersistAttemptEnded: self._attempt_ended,
            p.WriteCommit: lambda i: self._background.spawn(self._write_commit(i)),
            p.DeleteOutputs: lambda i: self._background.spawn(self._delete_outputs(i)),
            p.DeleteCommit: lambda i: self._background.spawn(self._delete_commit(i)),
            p.Finalize: lambda i: self._background.spawn(self._finalize(i)),
        }

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_forever())
        self._claimer = asyncio.create_task(self.claims.renew_forever())
        if self.janitor.interval > 0:
            self._janitor = asyncio.create_task(self.janitor.run_forever())

    async def stop(self) -> None:
        tasks = [*self._background.tasks,
                 *(t for t in (self._ticker, self._janitor, self._claimer) if t is not None)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.store.close()

    # --- the core ------------------------------------------------------------------------------------

    def feed(self, event: p.Event) -> list[p.Instruction]:
        """Hand one event to the core and carry out what it asks; returns the instructions (replies and
        refusals are the caller's to use)."""
        instructions = self.core.handle(event, time.monotonic())
        self.carry_out(instructions)
        self._core_changed.set()  # a held poll looks again (see _hold)
        self._core_changed = asyncio.Event()
        return instructions

    def carry_out(self, instructions: list[p.Instruction]) -> None:
        changed = False
        for ins in instructions:
            effect = self._effects.get(type(ins))
            if effect is not None:
                effect(ins)
            changed = changed or isinstance(ins, _JOB_CHANGES)
        if changed:
            self._job_changed.set()
            self._job_changed = asyncio.Event()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.feed(p.Tick())
            except Exception:  # a bug must not stop liveness checks for good: log it, keep ticking
                log.exception("coordinator tick failed")

    # --- effects -------------------------------------------------------------------------------------

    def _attempt_ended(self, ins: p.PersistAttemptEnded) -> None:
        self.store.attempt_ended(ins.attempt, ins.ok, ins.error, ins.ended, ins.output, ins.traceback)
        kind = "map" if "-m" in task_of(ins.attempt).rsplit("/", 1)[-1] else "reduce"
        self.attempt_outcomes[kind, "ok" if ins.ok else ins.cause or "failed"] += 1

    def _persist_started(self, ins: p.PersistStarted) -> None:
        self.store.job_started(ins.name, ins.started)
        self.store.keep_inputs(ins.name, list(self.task_inputs(ins.name).items()))

    def _persist_finalized(self, ins: p.PersistFinalized) -> None:
        self.store.job_finalized(ins.name, ins.state, ins.ended, ins.status)
        self.shuffle_bytes_done += shuffle_bytes(ins.status)
        log.info("job %s %s in %.1fs", ins.name, ins.state, ins.status.seconds)

    async def _write_commit(self, ins: p.WriteCommit) -> None:
        lost = ""
        try:
            in_force = await im.commit(self.client, ins.job, ins.record, superseded=ins.superseded)
            if ins.publish:
                try:
                    await im.publish(self.fs, ins.job, in_force.attempt, ins.publish)
                except (NotFoundError, DataLostError) as exc:
                    lost = str(exc)
        except DynamrError as exc:
            self.feed(p.CommitFailed(ins.job, ins.record, str(exc)))
        else:
            self.feed(p.CommitWritten(ins.job, ins.record, in_force, lost))

    async def _delete_outputs(self, ins: p.DeleteOutputs) -> None:
        try:
            if ins.local_intermediate:
                shutil.rmtree(Path(ins.local_intermediate) / ins.job / ins.attempt.replace("/", "_"),
                              ignore_errors=True)
            else:
                await im.delete_outputs(self.fs, ins.job, ins.attempt, ins.partitions)
        except DynamrError as exc:
            log.info("job %s: outputs of %s not deleted yet: %s", ins.job, ins.attempt, exc)
            if ins.confirm:
                self.feed(p.DeleteFailed(ins.job, ins.attempt, str(exc)))
        else:
            if ins.confirm:
                self.feed(p.OutputsDeleted(ins.job, ins.attempt))

    async def _delete_commit(self, ins: p.DeleteCommit) -> None:
        try:
            await im.delete_commit(self.client, ins.job, ins.task, ins.attempt)
        except DynamrError as exc:  # the record is void for this job anyway, and cleanup deletes it
            if ins.confirm:
                self.feed(p.DeleteFailed(ins.job, p.commit_garbage(ins.task, ins.attempt), str(exc)))
            else:
                log.warning("job %s: the void commit record of %s stays for now: %s", ins.job, ins.task, exc)
        else:
            if ins.confirm:
                self.feed(p.OutputsDeleted(ins.job, p.commit_garbage(ins.task, ins.attempt)))

    async def _finalize(self, ins: p.Finalize) -> None:
        try:
            await self._cleanup(ins)
        except (OSError, DynamrError) as exc:
            self.feed(p.FinalizeFailed(ins.job, str(exc)))
        else:
            self.feed(p.FinalizeDone(ins.job))

    async def _cleanup(self, ins: p.Finalize) -> None:
        """Mark success, then delete every attempt's outputs, commit records and step outputs (idempotent)."""
        plan = ins.plan
        if not ins.succeeded:
            await self._remove_partial_output(plan)
        if ins.succeeded:
            if plan.local_output:
                out = Path(plan.output)
                out.mkdir(parents=True, exist_ok=True)
                (out / "_SUCCESS").write_bytes(b"")
            else:  # written again on a retry: a put cut off after its manifest exists but is not listed
                await self.fs.put_bytes(b"", plan.output.rstrip("/") + "/_SUCCESS")
        local = plan.local_intermediate
        if local:
            shutil.rmtree(Path(local) / ins.job, ignore_errors=True)
        else:  # every attempt's output, committed or not (a killed attempt may have written some)
            for attempt, partitions in ins.attempts:
                await im.delete_outputs(self.fs, ins.job, attempt, partitions)
            await self._sweep_job_objects(ins.job)
        for task_id in ins.tasks:
            await im.delete_commit(self.client, ins.job, task_id)

    async def _remove_partial_output(self, plan: m.JobPlan) -> None:
        """A job that failed or was killed leaves no part files behind to block a re-run (its output did not
        exist when it was submitted, so all of it is the job's)."""
        if plan.local_output:
            out = Path(plan.output)
            for part in out.glob("part-*") if out.is_dir() else ():
                part.unlink(missing_ok=True)
        elif await self.fs.exists(plan.output):
            await self.fs.rm(plan.output, recursive=True)

    async def _sweep_job_objects(self, job: str) -> None:
        """Delete any object of the job still in the store that no record named (an attempt killed while
        writing). Best effort: a node that cannot be scanned now leaves its leftovers to `dynamr job delete`."""
        try:
            keys = {key async for _, key, _ in self.client.scan_replicas(im.job_objects(job), values=False)}
        except DynamrError as exc:
            log.info("job %s: could not look for leftover objects: %s", job, exc)
            return
        for key in sorted(keys):
            await self.fs.delete_object(key)
        if keys:
            log.info("job %s: deleted %d leftover object(s)", job, len(keys))

    # --- restart -------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild the jobs of earlier incarnations (before serving): unfinished ones resume."""
        now = time.monotonic()
        resumed = 0
        for stored in self.store.jobs():
            plan = load_plan(stored.plan)
            view = p.StoredJobView(stored.name, plan, stored.state, stored.started, stored.ended, stored.error,
                                   stored.final_status,
                                   tuple((a.attempt, a.node, a.started, a.ended, a.ok, a.error)
                                         for a in self.store.attempts(stored.name)), stored.ended_status)
            locate = None
            if stored.final_status is None:
                locate = await self._retrying(functools.partial(self._locator, plan))
            todo = restart.restore_job(self.core, view, locate, now)
            instructions: list[p.Instruction] = []
            while todo:
                found = await self._retrying(functools.partial(self._lookup, stored.name, todo))
                todo, more = restart.replayed(self.core, stored.name, found, view, now)
                instructions += more
            self.carry_out(instructions)
            resumed += stored.final_status is None and stored.state == "running"
        self.carry_out(restart.after_restore(self.core, now))
        log.info("coordinator incarnation %d: %d job(s) resumed, %d finished", self.incarnation, resumed,
                 len(self.core.finished) + len(self.core.older))

    async def _lookup(self, job: str, tasks: list[str]) -> dict[str, im.Commit | None]:
        found = await asyncio.gather(*(im.committed(self.client, job, t) for t in tasks))
        return dict(zip(tasks, found, strict=True))

    async def _retrying(self, action: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``action()`` until the store answers (a restarted coordinator may come up before its nodes)."""
        delay = 0.2
        while True:
            try:
                return await action()
            except DynamrError as exc:
                log.warning("recovery is waiting for the store: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- requests ------------------------------------------------------------------------------------

    async def _on_ping(self, msg: m.Ping) -> m.Pong:
        return m.Pong(node_id="coordinator", epoch="")

    def _status(self, name: str) -> m.JobStatusView:
        if name in self.core.finished:
            return self.core.finished[name]
        if name in self.core.older:
            status = self.store.final_status(name)
            if status is not None:
                return status
        jc = self.core.jobs.get(name)
        if jc is None:
            raise NotFoundError(f"no job named {name!r} (see 'dynamr jobs')")
        return jc.run.status(time.monotonic())

    def status_of(self, name: str) -> m.JobStatusView:
        """A job's status (raises NotFoundError for a job the coordinator does not know)."""
        return self._status(name)

    def statuses(self) -> list[m.JobStatusView]:
        """The status of every job not finished and of the last ``job_statuses_kept`` finished, those first."""
        return [*self.core.finished.values(), *self.unfinished()]

    def unfinished(self) -> list[m.JobStatusView]:
        """The status of every job not finalized yet (created, running or finishing)."""
        now = time.monotonic()
        return [jc.run.status(now) for jc in self.core.jobs.values()]

    def summaries(self) -> list[m.JobSummary]:
        """A line for every job the coordinator knows, finished ones first (what 'dynamr jobs' shows)."""
        return [*self.core.older.values(), *(summary_of(status) for status in self.statuses())]

    def task_inputs(self, name: str) -> dict[str, tuple[m.SplitRef, ...]]:
        """The input splits of each map task of a job that reads byte ranges."""
        jc = self.core.jobs.get(name)
        if jc is None:
            return self.store.inputs(name)
        return {task: splits for task, info in jc.run.tasks.items() if (splits := info.splits())}

    def _reply(self, name: str, instructions: list[p.Instruction]) -> m.JobStatusReply:
        for ins in instructions:
            if isinstance(ins, p.Refused):
                raise refused(ins)
        return m.JobStatusReply(status=self._status(name))

    async def _on_submit(self, msg: m.SubmitJob) -> m.JobStatusReply:
        check_job_name(msg.name)
        if (refusal := self.claims.refusal()) is not None:
            raise BadRequestError(refusal)
        if self.core.state_of(msg.name) != "unknown":
            raise BadRequestError(f"a job named {msg.name!r} already exists; choose another name")
        if msg.check_only:
            return m.JobStatusReply(status=m.JobStatusView(name=msg.name, state="unknown"))
        plan = msg.plan
        if plan is None:
            raise BadRequestError("a job submission must carry its plan")
        check_plan(plan)
        self._check_paths(plan)
        await self._check_io(plan)
        locate = await self._locator(plan)
        return self._reply(msg.name, self.feed(p.JobSubmitted(msg.name, plan, msg.run, locate)))

    def _check_paths(self, plan: JobPlan) -> None:
        """A client's plan may make this process touch only what it was configured to allow."""
        local = plan.local_inputs or plan.local_output or plan.local_intermediate
        if local and not self.local_jobs:
            raise BadRequestError("this coordinator does not accept local input, output or intermediate paths "
                                  "(only an embedded run does): put the inputs on the store and name a store "
                                  "output")
        paths = [plan.output] if plan.local_output else []
        paths += [path for path, _ in plan.inputs] if plan.local_inputs else []
        if any(not path.startswith("/") or ".." in Path(path).parts for path in paths):
            raise BadRequestError("local input and output paths must be absolute, without '..'")
        if plan.local_intermediate and (self.data_dir is None
                                        or not confined(plan.local_intermediate, str(self.data_dir))):
            raise BadRequestError("local intermediate data must be kept inside the coordinator's data directory")
        if not plan.source.startswith("/_jobs/"):
            raise BadRequestError("a job's source must be stored under /_jobs/")

    async def _check_io(self, plan: JobPlan) -> None:
        if plan.local_output:
            out = Path(plan.output)
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise BadRequestError(f"output {out} already exists; choose another or remove it first")
        elif await self.fs.exists(plan.output):
            raise BadRequestError(f"output {plan.output} already exists on the store; choose another or remove it")
        if plan.local_inputs:
            for path, _ in plan.inputs:
                if not Path(path).is_file():
                    raise NotFoundError(f"input {path} does not exist")
            return
        found = await each_bounded([path for path, _ in plan.inputs], self.fs.exists, STORE_CALLS_AT_ONCE)
        for (path, _), there in zip(plan.inputs, found, strict=True):
            if not there:
                raise NotFoundError(f"input {path} does not exist on the store")

    async def _locator(self, plan: JobPlan) -> Callable[[Split], set[str]] | None:
        """Which nodes hold the first chunk of each split (the scheduler prefers them)."""
        if plan.local_inputs:
            return None
        async def nodes(split: Split) -> set[str]:
            try:
                located = await self.fs.locate(split.path, split.start, 1)
            except DynamrError:
                return set()
            return set(located[0].nodes) if located else set()

        splits = splits_of(plan)
        located = await each_bounded(splits, nodes, STORE_CALLS_AT_ONCE)
        table = {(s.path, s.start): held for s, held in zip(splits, located, strict=True)}

        def locate(split: Split) -> set[str]:
            return table.get((split.path, split.start), set())

        return locate

    async def _on_run(self, msg: m.RunJob) -> m.JobStatusReply:
        self._status(msg.name)  # a clear error for an unknown job
        return self._reply(msg.name, self.feed(p.RunRequested(msg.name)))

    async def _on_kill(self, msg: m.KillJob) -> m.JobStatusReply:
        self._status(msg.name)
        instructions = self.feed(p.KillRequested(msg.name))
        log.warning("job %s: kill requested", msg.name)
        return self._reply(msg.name, instructions)

    async def _on_delete(self, msg: m.DeleteJob) -> m.DeleteJobReply:
        name = msg.name
        check_job_name(name)
        if self.core.state_of(name) == "unknown":
            raise NotFoundError(f"no job named {name!r} (see 'dynamr jobs')")
        refusal = self.core.forget_refusal(name)  # running, or not yet cleaned up and swept
        if refusal is not None:
            raise refused(refusal)
        removed = []
        for path in (f"/_jobs/{name}", f"/_inputs/{name}", f"/_outputs/{name}"):
            if await self.fs.exists(path):
                await self.fs.rm(path, recursive=True)
                removed.append(path)
        await self._sweep_job_objects(name)
        for ins in self.feed(p.ForgetRequested(name)):
            if isinstance(ins, p.Refused):
                raise refused(ins)
        log.info("job %s deleted (%s)", name, ", ".join(removed) or "nothing stored")
        return m.DeleteJobReply(removed=tuple(removed))

    async def _on_logs(self, msg: m.TaskLogs) -> m.TaskLogsReply:
        check_job_name(msg.name)
        if self.core.state_of(msg.name) == "unknown":
            raise NotFoundError(f"no job named {msg.name!r} (see 'dynamr jobs')")
        logs = [log for log in self.store.logs(msg.name)
                if not msg.task or msg.task in (log.task, log.task.split("/", 1)[-1])]
        kept: list[m.AttemptLog] = []
        size = 0
        for entry in logs:
            size += len(entry.output) + len(entry.traceback)
            if kept and size > LOGS_REPLY_BYTES:
                break
            kept.append(entry)
        return m.TaskLogsReply(logs=tuple(kept), more=len(logs) - len(kept))

    async def _on_web_address(self, msg: m.WebAddress) -> m.WebAddressReply:
        return m.WebAddressReply(host=self.web_address[0], port=self.web_address[1])

    async def _on_status(self, msg: m.JobStatus) -> m.JobStatusReply:
        """The job's status; with ``wait``, once the job has ended or that many seconds have passed (a
        client following a job learns of its end at once, without polling)."""
        if not 0.0 <= msg.wait <= MAX_STATUS_WAIT:
            raise BadRequestError(f"a status request may wait 0 to {MAX_STATUS_WAIT:g} seconds, not {msg.wait!r}")
        status = self._status(msg.name)
        deadline = time.monotonic() + msg.wait
        while status.state not in ENDED and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._job_changed.wait(), left)
            status = self._status(msg.name)
        return m.JobStatusReply(status=status)

    async def _on_list(self, msg: m.ListJobs) -> m.ListJobsReply:
        return m.ListJobsReply(jobs=tuple(self.summaries()))

    async def _on_heartbeat(self, msg: m.WorkerHeartbeat) -> m.WorkerHeartbeatReply:
        for report in msg.reports:
            if report.cause not in m.REPORT_CAUSES:
                raise BadRequestError(f"unknown failure cause {report.cause!r} in a report")
        if not 0.0 <= msg.hold <= MAX_POLL_HOLD:
            raise BadRequestError(f"a poll may be held 0 to {MAX_POLL_HOLD:g} seconds, not {msg.hold!r}")
        held = await self._hold(msg)
        instructions = self.feed(p.WorkerPolled(msg.node_id, msg.incarnation, msg.seq, msg.free_slots, msg.running,
                                                msg.progress, msg.reports))
        reply = next(i for i in instructions if isinstance(i, p.ReplyToWorker))
        # again: the next poll will be kept (a worker's first poll, which registers it, is answered at once)
        again = held or (keepable(msg) and self.core.may_hold(msg.node_id, msg.incarnation, time.monotonic()))
        return m.WorkerHeartbeatReply(assignments=reply.assignments, kills=reply.kills, acked=reply.acked,
                                      seq=reply.seq, soon=reply.soon, again=again)

    async def _hold(self, msg: m.WorkerHeartbeat) -> bool:
        """Keep an idle worker's poll while the core has nothing for it (see CoordinatorCore.may_hold), up to
        the hold it allows: a task that becomes ready reaches it at once. Whether the poll was kept."""
        if not keepable(msg):
            return False
        deadline = time.monotonic() + self.core.hold_for(msg.hold)
        held = False
        while self.core.may_hold(msg.node_id, msg.incarnation, now := time.monotonic()) and now < deadline:
            held = True
            ready = self.core.scheduler.next_ready(now)  # (a task backing off becomes one it could take)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._core_changed.wait(), min(deadline, ready or deadline) - now)
        return held

