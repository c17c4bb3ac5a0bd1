"""The coordinator: jobs by unique name, task assignment through worker heartbeats, commits, cleanup.

The thin asyncio layer around :class:`~dynamr.mapreduce.scheduler.Scheduler` and
:class:`~dynamr.mapreduce.jobrun.JobRun`. Workers pull work: each heartbeat reports the attempts that
ended and the node's free slots, and the reply carries new task specs. A successful attempt that won its
task gets a write-once commit record in the store before the job moves on; a loser's outputs are deleted.
When a job ends, its intermediate objects and commit records are deleted and ``_SUCCESS`` is written.
Node liveness comes from the same heartbeats: a silent node's running attempts are re-queued.
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

from dynamr.errors import BadRequestError, DynamrError, NotFoundError
from dynamr.files.client import FileSystem
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.jobrun import JobPlan, JobRun
from dynamr.mapreduce.scheduler import Scheduler
from dynamr.mapreduce.splits import Split
from dynamr.rpc import messages as m
from dynamr.rpc.server import Dispatcher
from dynamr.store.client import AsyncClient

log = logging.getLogger(__name__)

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Coordinator:
    def __init__(self, client: AsyncClient, *, max_attempts: int = 4, node_timeout: float = 5.0) -> None:
        self.client = client
        self.fs = FileSystem(client)
        self.scheduler = Scheduler(max_attempts=max_attempts, node_timeout=node_timeout)
        self.jobs: dict[str, JobRun] = {}
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

    def start(self) -> None:
        self._watch = asyncio.create_task(self._watch_nodes())

    async def stop(self) -> None:
        tasks = [*self._background, *([self._watch] if self._watch else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_nodes(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for node in self.scheduler.dead_nodes(time.time()):
                log.warning("node %s stopped heart-beating; its running attempts are re-queued", node)

    async def _on_ping(self, msg: m.Ping) -> m.Pong:
        return m.Pong(node_id="coordinator", epoch="")

    # --- jobs ----------------------------------------------------------------------------------------

    def _job(self, name: str) -> JobRun:
        job = self.jobs.get(name)
        if job is None:
            raise NotFoundError(f"no job named {name!r} (see 'dynamr jobs')")
        return job

    async def _on_submit(self, msg: m.SubmitJob) -> m.JobStatusReply:
        if not JOB_NAME.match(msg.name):
            raise BadRequestError(f"job name {msg.name!r} must be 1-100 letters, digits, '.', '_' or '-'")
        async with self._lock:
            if msg.name in self.jobs:
                raise BadRequestError(f"a job named {msg.name!r} already exists; choose another name")
            plan = JobPlan.from_json(msg.plan)
            await self._check_plan(plan)
            job = JobRun(msg.name, plan, self.scheduler, await self._locator(plan))
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
        job.start(time.time())
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
        log.warning("job %s killed by the user", job.name)
        self._spawn(self._finish(job))
        return m.JobStatusReply(status=json.dumps(job.status()))

    async def _on_status(self, msg: m.JobStatus) -> m.JobStatusReply:
        return m.JobStatusReply(status=json.dumps(self._job(msg.name).status()))

    async def _on_list(self, msg: m.ListJobs) -> m.ListJobsReply:
        rows = []
        for job in self.jobs.values():
            status = job.status()
            rows.append({k: status[k] for k in ("name", "state", "maps", "maps_done", "reduces", "reduces_done",
                                                "seconds", "output")})
        return m.ListJobsReply(jobs=json.dumps(rows))

    # --- workers -------------------------------------------------------------------------------------

    async def _on_heartbeat(self, msg: m.WorkerHeartbeat) -> m.WorkerHeartbeatReply:
        now = time.time()
        self.scheduler.heartbeat(msg.node_id, now)
        reports = json.loads(msg.reports)
        kills = self._kills.get(msg.node_id)
        if kills:
            kills.difference_update(r["attempt"] for r in reports)
        for report in reports:
            await self._report(report, now)
        base = {"scratch_dir": None}
        specs = []
        for assignment in self.scheduler.offer(msg.node_id, msg.free_slots, now):
            job = self.jobs[assignment.task_id.split("/")[0]]
            specs.append(json.dumps(job.spec_for(assignment, base)))
        return m.WorkerHeartbeatReply(assignments=tuple(specs), kills=tuple(sorted(kills or ())))

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
        job = self.jobs.get(attempt.split("/")[0])
        if job is None:
            return
        result = report.get("result") or {}
        if not report.get("ok"):
            log.info("attempt %s failed: %s", attempt, result.get("error", "?"))
            if job.on_failure(attempt, result, now):
                log.error("job %s failed: task %s used up its attempts", job.name, attempt.split("#")[0])
                self._spawn(self._finish(job))
            return
        record = job.on_success(attempt, result, now)
        if record is None:  # a loser (or the job ended): its outputs are garbage
            if job.plan.local_intermediate:
                shutil.rmtree(Path(job.plan.local_intermediate) / job.name / attempt.replace("/", "_"),
                              ignore_errors=True)
            else:
                self._spawn(im.delete_outputs(self.fs, job.name, attempt, result.get("partitions", [])))
            return
        in_force = await im.commit(self.client, job.name, record)
        job.committed(in_force, now)
        if job.state != "running":
            self._spawn(self._finish(job))

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
        for task_id in list(job.commits):
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
