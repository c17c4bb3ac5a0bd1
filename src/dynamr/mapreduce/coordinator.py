"""The coordinator: jobs by unique name, task assignment through worker heartbeats, commits, cleanup.

The thin asyncio layer around :class:`~dynamr.mapreduce.scheduler.Scheduler` and
:class:`~dynamr.mapreduce.jobrun.JobRun`. Workers pull work: each heartbeat reports the attempts that
ended and the node's free slots, and the reply carries new task specs. A successful attempt that won its
task gets a write-once commit record in the store before the job moves on; a loser's outputs are deleted.
When a job ends, its intermediate objects and commit records are deleted and ``_SUCCESS`` is written.
Node liveness comes from the same heartbeats: a silent node's running attempts are re-queued.

Jobs and attempts are kept in a :class:`~dynamr.mapreduce.jobstore.JobStore`. A restarted coordinator
(:meth:`Coordinator.recover`) rebuilds each unfinished job from its plan, re-reads the commit records in the
store to find which tasks are done (never re-running them), adopts attempts that nodes report still
running from before the restart, and finishes the cleanup of jobs that had ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

from dynamr.config import StoreSettings
from dynamr.errors import BadRequestError, DynamrError, NotFoundError
from dynamr.files.client import FileSystem
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.jobrun import JobPlan, JobRun, job_of, task_of
from dynamr.mapreduce.jobstore import JobStore
from dynamr.mapreduce.scheduler import Scheduler
from dynamr.mapreduce.splits import Split
from dynamr.rpc import messages as m
from dynamr.rpc.server import Dispatcher
from dynamr.store.client import AsyncClient

log = logging.getLogger(__name__)

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Coordinator:
    def __init__(self, client: AsyncClient, settings: StoreSettings | None = None, *,
                 data_dir: Path | None = None) -> None:
        settings = settings or StoreSettings()
        self.client = client
        self.task_timeout = settings.task_timeout
        self.fs = FileSystem(client)
        self.store = JobStore(data_dir)
        self.incarnation = self.store.next_incarnation()
        self.scheduler = Scheduler(max_attempts=settings.max_attempts, node_timeout=settings.worker_timeout,
                                   attempt_prefix="" if self.incarnation == 1 else f"{self.incarnation}.",
                                   exclude_after=settings.node_exclusion_failures,
                                   speculative=settings.speculative_execution,
                                   slow_factor=settings.speculative_slow_factor,
                                   speculative_share=settings.speculative_share,
                                   speculative_after=settings.speculative_after)
        #: after a restart, no new assignments for this long: nodes first report what they still run
        recovery_grace = max(1.0, 3 * settings.worker_heartbeat)
        self.jobs: dict[str, JobRun] = {}
        #: final status of jobs finished before this incarnation started
        self.finished: dict[str, dict[str, Any]] = {}
        self.recovery_grace = recovery_grace
        #: no new assignments before this time (after a restart: let nodes report what they still run)
        self._assign_after = 0.0
        self.dispatcher = Dispatcher("coordinator")
        for cls, handler in ((m.Ping, self._on_ping), (m.SubmitJob, self._on_submit), (m.RunJob, self._on_run),
                             (m.JobStatus, self._on_status), (m.ListJobs, self._on_list),
                             (m.WorkerHeartbeat, self._on_heartbeat), (m.KillJob, self._on_kill)):
            self.dispatcher.register(cls, handler)
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[None] | None = None
        #: node -> attempts it must kill; an attempt stays here until its node reports it ended
        self._kills: dict[str, set[str]] = {}
        #: node -> its worker process's incarnation, from its last heartbeat
        self._incarnations: dict[str, str] = {}

    def start(self) -> None:
        self._watch = asyncio.create_task(self._watch_nodes())

    async def stop(self) -> None:
        tasks = [*self._background, *([self._watch] if self._watch else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.store.close()

    # --- restart -------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild the jobs of earlier incarnations (before serving): unfinished ones resume."""
        resumed = 0
        for stored in self.store.jobs():
            if stored.final_status is not None:
                self.finished[stored.name] = stored.final_status
                continue
            plan = JobPlan.from_json(stored.plan)
            job = JobRun(stored.name, plan, self.scheduler, await self._retrying(lambda p=plan: self._locator(p)))
            job.restore([(a.attempt, a.node, a.started, a.ended, a.ok, a.error)
                         for a in self.store.attempts(stored.name)])
            self.jobs[stored.name] = job
            if stored.state == "created":
                continue
            job.start(stored.started)
            await self._retrying(lambda j=job: self._replay(j))
            if stored.state in ("failed", "killed"):
                job.state, job.error, job.ended_at = stored.state, stored.error, stored.ended
            if job.state == "running":
                resumed += 1
            else:
                self._spawn(self._finish(job))
        if resumed:
            self._assign_after = time.time() + self.recovery_grace
        log.info("coordinator incarnation %d: %d job(s) resumed, %d finished", self.incarnation, resumed,
                 len(self.finished))

    async def _retrying(self, action: Any) -> Any:
        """Run ``action()`` until the store answers (a restarted coordinator may come up before its nodes)."""
        delay = 0.2
        while True:
            try:
                return await action()
            except DynamrError as exc:
                log.warning("recovery is waiting for the store: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _replay(self, job: JobRun) -> None:
        """Find the job's tasks whose commit records exist (phase after phase) and mark them done."""
        probed: set[str] = set()
        now = time.time()
        while True:
            todo = [t for t in job.tasks if t not in job.commits and t not in probed]
            if not todo:
                return
            found = await asyncio.gather(*(im.committed(self.client, job.name, t) for t in todo))
            probed.update(todo)
            if not any(found):
                return
            for task_id, record in zip(todo, found, strict=True):
                if record is not None:
                    self.scheduler.mark_committed(task_id, record.attempt)
                    job.committed(record, now)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_nodes(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for node, lost in self.scheduler.dead_nodes(now).items():
                log.warning("node %s stopped heart-beating; %d running attempt(s) re-queued", node, len(lost))
                self._written_off(lost, f"lost with node {node} (no heartbeat for {self.scheduler.node_timeout:g}s)",
                                  now)

    def _written_off(self, lost: list[str], error: str, now: float) -> None:
        """Attempts lost with their node (the scheduler has re-queued their tasks) become task records."""
        for attempt in lost:
            self.store.attempt_ended(attempt, False, error, now)
            job = self.jobs.get(job_of(attempt))
            if job is not None:
                job.lost(attempt, error, now)

    async def _on_ping(self, msg: m.Ping) -> m.Pong:
        return m.Pong(node_id="coordinator", epoch="")

    # --- jobs ----------------------------------------------------------------------------------------

    def _job(self, name: str) -> JobRun:
        job = self.jobs.get(name)
        if job is None:
            if name in self.finished:
                raise BadRequestError(f"job {name!r} has already {self.finished[name]['state']}")
            raise NotFoundError(f"no job named {name!r} (see 'dynamr jobs')")
        return job

    async def _on_submit(self, msg: m.SubmitJob) -> m.JobStatusReply:
        if not JOB_NAME.match(msg.name):
            raise BadRequestError(f"job name {msg.name!r} must be 1-100 letters, digits, '.', '_' or '-'")
        async with self._lock:
            if msg.name in self.jobs or msg.name in self.finished:
                raise BadRequestError(f"a job named {msg.name!r} already exists; choose another name")
            plan = JobPlan.from_json(msg.plan)
            await self._check_plan(plan)
            job = JobRun(msg.name, plan, self.scheduler, await self._locator(plan))
            self.store.add_job(msg.name, msg.plan, "created", time.time())
            self.jobs[msg.name] = job
            if msg.run:
                self._start(job)
        return m.JobStatusReply(status=json.dumps(job.status()))

    async def _check_plan(self, plan: JobPlan) -> None:
        if not plan.steps:
            raise BadRequestError("the job has no steps")
        if plan.local_output:
            out = Path(plan.output)
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise BadRequestError(f"output {out} already exists; choose another or remove it first")
        elif await self.fs.exists(plan.output):
            raise BadRequestError(f"output {plan.output} already exists on the store; choose another or remove it")
        for path, _ in plan.inputs:
            if plan.local_inputs and not Path(path).is_file():
                raise NotFoundError(f"input {path} does not exist")
            if not plan.local_inputs and not await self.fs.exists(path):
                raise NotFoundError(f"input {path} does not exist on the store")

    async def _locator(self, plan: JobPlan) -> Any:
        """Which nodes hold the first chunk of each split (the scheduler prefers them)."""
        if plan.local_inputs:
            return None
        table: dict[tuple[str, int], set[str]] = {}
        from dynamr.mapreduce.splits import plan_splits

        for split in plan_splits(plan.inputs, plan.split_size, whole_files=plan.input_format == "whole_file"):
            try:
                located = await self.fs.locate(split.path, split.start, 1)
            except DynamrError:
                continue
            table[(split.path, split.start)] = set(located[0].nodes) if located else set()

        def locate(split: Split) -> set[str]:
            return table.get((split.path, split.start), set())

        return locate

    def _start(self, job: JobRun) -> None:
        now = time.time()
        self.store.job_started(job.name, now)
        job.start(now)
        log.info("job %s started: %d map task(s)", job.name, len(job.tasks))
        if job.state != "running":
            self._spawn(self._finish(job))

    async def _on_run(self, msg: m.RunJob) -> m.JobStatusReply:
        job = self._job(msg.name)
        if job.state != "created":
            raise BadRequestError(f"job {msg.name!r} is already {job.state}")
        self._start(job)
        return m.JobStatusReply(status=json.dumps(job.status()))

    async def _on_kill(self, msg: m.KillJob) -> m.JobStatusReply:
        job = self._job(msg.name)
        if not job.kill(time.time()):
            raise BadRequestError(f"job {msg.name!r} has already {job.state}; there is nothing to kill")
        self.store.job_ended(job.name, job.state, job.ended_at, job.error)
        log.warning("job %s killed by the user", job.name)
        self._spawn(self._finish(job))
        return m.JobStatusReply(status=json.dumps(job.status()))

    async def _on_status(self, msg: m.JobStatus) -> m.JobStatusReply:
        if msg.name in self.finished:
            return m.JobStatusReply(status=json.dumps(self.finished[msg.name]))
        return m.JobStatusReply(status=json.dumps(self._job(msg.name).status()))

    async def _on_list(self, msg: m.ListJobs) -> m.ListJobsReply:
        rows = []
        for status in [*self.finished.values(), *(job.status() for job in self.jobs.values())]:
            rows.append({k: status[k] for k in ("name", "state", "maps", "maps_done", "reduces", "reduces_done",
                                                "seconds", "output")})
        return m.ListJobsReply(jobs=json.dumps(rows))

    # --- workers -------------------------------------------------------------------------------------

    async def _on_heartbeat(self, msg: m.WorkerHeartbeat) -> m.WorkerHeartbeatReply:
        now = time.time()
        node = msg.node_id
        known = self._incarnations.get(node)
        if msg.incarnation and known is not None and known != msg.incarnation:
            lost = self.scheduler.node_lost(node)  # it restarted faster than the timeout could notice
            log.warning("node %s restarted; %d running attempt(s) re-queued", node, len(lost))
            self._written_off(lost, f"lost with node {node} (it restarted)", now)
        self._incarnations[node] = msg.incarnation
        self.scheduler.heartbeat(node, now)
        reports = json.loads(msg.reports)
        kills = self._kills.setdefault(node, set())
        kills.difference_update(r["attempt"] for r in reports)
        for report in reports:
            self._adopt(report["attempt"], node, now)
        for attempt in msg.running:
            if not self.scheduler.is_running(attempt, node) and not self._adopt(attempt, node, now):
                kills.add(attempt)  # nobody wants it any more: its job ended, or it was written off with its node
        for attempt, fraction in zip(msg.running, msg.progress, strict=False):
            self.scheduler.progress(attempt, fraction)
        for report in reports:
            await self._report(report, now)
        base = {"scratch_dir": None, "progress_timeout": self.task_timeout}
        specs = []
        if now >= self._assign_after:
            for assignment in self.scheduler.offer(node, msg.free_slots, now):
                job = self.jobs[job_of(assignment.task_id)]
                specs.append(json.dumps(job.spec_for(assignment, base)))
                if assignment.speculative:
                    log.info("backup attempt %s of straggler %s on %s", assignment.attempt_id, assignment.task_id,
                             node)
                self.store.attempt_started(job.name, assignment.task_id, assignment.attempt_id, node, now)
        return m.WorkerHeartbeatReply(assignments=tuple(specs), kills=tuple(sorted(kills)))

    def _adopt(self, attempt: str, node: str, now: float) -> bool:
        """An attempt this incarnation does not know (started before a restart) and still wanted becomes a
        running attempt of its task. False for attempts already known, and for unwanted ones."""
        if self.scheduler.knows(attempt):
            return False
        job = self.jobs.get(job_of(attempt))
        if job is None or job.state != "running" or not self.scheduler.adopt(task_of(attempt), attempt, node,
                                                                             now):
            return False
        job.adopted(attempt, node, now)
        self.store.attempt_started(job.name, task_of(attempt), attempt, node, now)
        log.info("adopted attempt %s running on %s from before the restart", attempt, node)
        return True

    def _kill_attempts(self, attempts: dict[str, str]) -> None:
        """Have each node kill these attempts (attempt -> node) at its next heartbeat."""
        for attempt, node in attempts.items():
            self._kills.setdefault(node, set()).add(attempt)

    async def _stopped(self, attempts: dict[str, str], deadline: float) -> bool:
        """Wait until every attempt's node has reported it ended (or is dead); False at the deadline."""
        while time.monotonic() < deadline:
            if not any(a in self._kills.get(n, ()) and self.scheduler.alive(n) for a, n in attempts.items()):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _report(self, report: dict[str, Any], now: float) -> None:
        attempt: str = report["attempt"]
        job = self.jobs.get(job_of(attempt))
        if job is None:
            return
        result = report.get("result") or {}
        self.store.attempt_ended(attempt, bool(report.get("ok")), str(result.get("error", "")), now)
        if not report.get("ok") and result.get("lost_input"):
            await self._input_lost(job, attempt, result, now)
            return
        if not report.get("ok"):
            log.info("attempt %s failed: %s", attempt, result.get("error", "?"))
            if job.on_failure(attempt, result, now):
                log.error("job %s failed: task %s used up its attempts", job.name, task_of(attempt))
                self.store.job_ended(job.name, job.state, job.ended_at, job.error)
                self._spawn(self._finish(job))
            return
        record = job.on_success(attempt, result, now)
        if record is None and self.scheduler.committed_attempt(attempt) == attempt:
            return  # the committed attempt itself, reported again after a coordinator restart
        if record is None:  # a loser (or the job ended): its outputs are garbage
            if job.plan.local_intermediate:
                shutil.rmtree(Path(job.plan.local_intermediate) / job.name / attempt.replace("/", "_"),
                              ignore_errors=True)
            else:
                self._spawn(im.delete_outputs(self.fs, job.name, attempt, result.get("partitions", [])))
            return
        self._kill_attempts(self.scheduler.other_attempts(attempt))  # backups that lost the race
        in_force = await im.commit(self.client, job.name, record, superseded=job.superseded)
        job.committed(in_force, now)
        if job.state != "running":
            self._spawn(self._finish(job))

    async def _input_lost(self, job: JobRun, attempt: str, result: dict[str, Any], now: float) -> None:
        """An attempt found an earlier task's committed output gone: that task runs again (its stale commit
        record is deleted; should that fail, the record is still void for this job, see ``superseded``)."""
        producer = job.on_input_lost(attempt, result, now)
        log.warning("attempt %s could not read its input: %s", attempt, result.get("error", "?"))
        if job.state != "running":
            self.store.job_ended(job.name, job.state, job.ended_at, job.error)
            self._spawn(self._finish(job))
            return
        if producer is not None:
            log.warning("job %s: task %s runs again, its committed output is lost", job.name, producer)
            try:
                await im.delete_commit(self.client, job.name, producer)
            except DynamrError as exc:
                log.warning("job %s: the void commit record of %s stays for now: %s", job.name, producer, exc)

    async def _finish(self, job: JobRun) -> None:
        """A job ended: mark success, and delete its intermediate data."""
        running = self.scheduler.remove(list(job.tasks))
        if running:
            log.info("job %s ended with %d attempt(s) still running; killing them", job.name, len(running))
            self._kill_attempts(running)
            if not await self._stopped(running, time.monotonic() + 2 * self.scheduler.node_timeout):
                log.warning("job %s: some attempts were not confirmed stopped; cleaning up anyway", job.name)
        if job.state == "succeeded":
            try:
                if job.plan.local_output:
                    out = Path(job.plan.output)
                    out.mkdir(parents=True, exist_ok=True)
                    (out / "_SUCCESS").write_bytes(b"")
                else:
                    await self.fs.put_bytes(b"", job.plan.output.rstrip("/") + "/_SUCCESS")
            except (OSError, DynamrError) as exc:
                log.error("job %s: could not write _SUCCESS: %s", job.name, exc)
        await self._cleanup(job)
        job.finalized = True
        self.store.job_finalized(job.name, job.state, job.ended_at, job.status())
        log.info("job %s %s in %.1fs", job.name, job.state, job.status()["seconds"])

    async def _cleanup(self, job: JobRun) -> None:
        local = job.plan.local_intermediate
        if local:
            shutil.rmtree(Path(local) / job.name, ignore_errors=True)
        if not local:  # every map attempt's output, committed or not (a killed attempt may have written some)
            for attempt, partitions in job.map_attempt_outputs():
                try:
                    await im.delete_outputs(self.fs, job.name, attempt, partitions)
                except DynamrError as exc:
                    log.warning("job %s: cleanup of %s postponed: %s", job.name, attempt, exc)
        for task_id in {*job.commits, *job.superseded.values()}:
            try:
                await im.delete_commit(self.client, job.name, task_id)
            except DynamrError as exc:
                log.warning("job %s: cleanup of %s postponed: %s", job.name, task_id, exc)
        for step in range(0 if local else len(job.plan.steps) - 1):
            for number in range(max(len(job.tasks), 1)):
                key = f"{im.PREFIX}{job.name}/step{step}/{number}".encode()
                with contextlib.suppress(DynamrError):
                    if not await self.fs.delete_object(key):
                        break
