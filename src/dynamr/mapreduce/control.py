"""The coordinator's core: one sans-I/O state machine for every job, task, attempt and worker.

Events come in (:mod:`dynamr.mapreduce.protocol`: a job submitted, a worker's poll, a commit record written
or not, a job's cleanup done or not, a kill requested, a tick), each with the current monotonic time, and
instructions come out (write a commit record, delete outputs, finalize a job, persist a fact, reply to a
worker). The asyncio shell (:mod:`dynamr.mapreduce.coordinator`) carries the instructions out and feeds
their outcomes back as events; the simulator (``tests/sim``) does the same on a virtual clock and network.
Nothing here reads a clock, sleeps or does I/O.
A restarted coordinator rebuilds this machine from what it persisted with :mod:`dynamr.mapreduce.restart`.

The rules that make it safe (each has a named simulation test):

- **State moves on confirmed effects.** A task is committed when the ``CommitWritten`` event arrives, not
  when the write is sent (:data:`~dynamr.mapreduce.scheduler.TASK_TRANSITIONS`); a write that failed is
  retried after ``commit_retry`` seconds while the job runs.
- **Every exchange is idempotent or reconciled.** A worker resends each report until a reply acknowledges
  it, and a report is handled once per attempt. Polls carry a sequence number: a repeated or older poll
  assigns nothing. A node's running list is reconciled both ways against its assignments: an attempt it
  runs that nobody wants is killed (until it stops listing it), and an attempt it was assigned but does not
  list in a later poll (the reply was lost) is written off and its task re-queued.
- **A job finalizes once.** Ending a job (success, failure, kill) kills its running attempts; it finalizes
  (``_SUCCESS``, cleanup) when those are confirmed stopped (or ``stop_timeout`` passed) and no commit write
  is in flight, in one transition of :data:`PHASES`; a failed cleanup is retried.
- **Failures are attributed to their cause.** A store outage (``cause="store"``) or a kill does not count
  against a task's attempts or its node.
- **Late outputs are collected.** A report that arrives for a job already finalized (its node was paused or
  cut off) gets its outputs deleted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

from dynamr.errors import BadRequestError
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce import protocol as p
from dynamr.mapreduce.corestate import PHASES, CoreSettings, JobCore, NodeView, Tombstone
from dynamr.mapreduce.jobplan import check_plan
from dynamr.mapreduce.jobrun import ENDED, JobRun, job_of, summary_of, task_of
from dynamr.mapreduce.scheduler import IllegalTransition, Scheduler
from dynamr.rpc.messages import AttemptReport, JobStatusView, JobSummary, TaskSpec

log = logging.getLogger(__name__)

class CoordinatorCore:
    def __init__(self, settings: CoreSettings | None = None, *, incarnation: int = 1,
                 wall_offset: float = 0.0) -> None:
        self.settings = s = settings or CoreSettings()
        self.incarnation = incarnation
        #: added to monotonic times for what users read (history, status)
        self.wall_offset = wall_offset
        self.scheduler = Scheduler(max_attempts=s.max_attempts, node_timeout=s.node_timeout,
                                   attempt_prefix="" if incarnation == 1 else f"{incarnation}.",
                                   exclude_after=s.exclude_after, speculative=s.speculative,
                                   slow_factor=s.slow_factor, speculative_share=s.speculative_share,
                                   speculative_after=s.speculative_after)
        self.jobs: dict[str, JobCore] = {}
        #: final status of the last ``statuses_kept`` jobs finalized (here or before a restart), oldest first
        self.finished: dict[str, JobStatusView] = {}
        #: the line ``dynamr jobs`` shows of each job finalized before those (its full status is on disk)
        self.older: dict[str, JobSummary] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self.nodes: dict[str, NodeView] = {}
        #: attempt -> (node, seq of the poll whose reply assigned it), until the node lists it
        self.unconfirmed: dict[str, tuple[str, int]] = {}
        #: node -> attempts it must kill (kept until it no longer lists them)
        self.kills: dict[str, set[str]] = {}
        self.assign_after = 0.0
        #: attempts of finalized jobs whose end was never confirmed (their node was cut off): attempt -> node
        self.stragglers: dict[str, str] = {}
        #: outputs (and uncertain commit records) of finalized jobs to delete, until the store confirms it:
        #: attempt (or p.commit_garbage(task)) -> (instruction, retry at)
        self.garbage: dict[str, tuple[p.DeleteOutputs | p.DeleteCommit, float]] = {}
        #: finalized jobs whose late sweep is not done: job -> its attempts still to sweep
        self.sweeps: dict[str, set[str]] = {}
        #: for :func:`~dynamr.mapreduce.restart.after_restore`: sweeps of jobs finalized before a restart, and
        #: jobs succeeded not finalized
        self.restored_sweeps: list[tuple[str, list[str], list[tuple[str, str]]]] = []
        self.restored_ends: list[str] = []
        self._handlers: dict[type[Any], Callable[[Any, float], list[p.Instruction]]] = {
            p.JobSubmitted: self._on_submitted, p.RunRequested: self._on_run, p.KillRequested: self._on_kill,
            p.ForgetRequested: self._on_forget, p.WorkerPolled: self._on_poll, p.Tick: self._on_tick,
            p.CommitWritten: self._on_commit_written, p.CommitFailed: self._on_commit_failed,
            p.FinalizeDone: self._on_finalized, p.FinalizeFailed: self._on_finalize_failed,
            p.OutputsDeleted: self._on_outputs_deleted, p.DeleteFailed: self._on_delete_failed,
        }

    # --- entry point ---------------------------------------------------------------------------------

    def handle(self, event: p.Event, now: float) -> list[p.Instruction]:
        """Feed one event in at monotonic time ``now``; returns what to do, in order."""
        return self._handlers[type(event)](event, now)

    def wall(self, now: float) -> float:
        return now + self.wall_offset

    # --- jobs ----------------------------------------------------------------------------------------

    def _on_submitted(self, ev: p.JobSubmitted, now: float) -> list[p.Instruction]:
        if self.state_of(ev.name) != "unknown":
            return [p.Refused(ev.name, f"a job named {ev.name!r} already exists; choose another name")]
        try:
            check_plan(ev.plan)
        except BadRequestError as exc:
            return [p.Refused(ev.name, str(exc))]
        plan = ev.plan
        if plan.task_slots == 0:  # fixed now, kept with the plan: a restart finds the same tasks
            plan = dataclasses.replace(plan, task_slots=sum(view.slots for view in self.nodes.values()))
        run = JobRun(ev.name, plan, self.scheduler, ev.locate, wall_offset=self.wall_offset)
        self.jobs[ev.name] = JobCore(run)
        out: list[p.Instruction] = [p.PersistJob(ev.name, plan, self.wall(now))]
        if ev.run:
            out += self._start(self.jobs[ev.name], now)
        return out

    def _on_run(self, ev: p.RunRequested, now: float) -> list[p.Instruction]:
        jc = self.jobs.get(ev.name)
        if jc is None or jc.run.state != "created":
            return [p.Refused(ev.name, f"job {ev.name!r} is already {self.state_of(ev.name)}")]
        return self._start(jc, now)

    def _start(self, jc: JobCore, now: float) -> list[p.Instruction]:
        jc.run.start(now)
        out: list[p.Instruction] = [p.PersistStarted(jc.run.name, self.wall(now))]
        if jc.run.state in ENDED:  # no input at all
            out += self.end_job(jc, now)
        return out

    def _on_kill(self, ev: p.KillRequested, now: float) -> list[p.Instruction]:
        jc = self.jobs.get(ev.name)
        if jc is None or not jc.run.kill(now):
            return [p.Refused(ev.name, f"job {ev.name!r} has already {self.state_of(ev.name)}; there is nothing to "
                                       "kill")]
        return self.end_job(jc, now)

    def forget_refusal(self, name: str) -> p.Refused | None:
        """Why job ``name`` cannot be forgotten now (None: it can): not while it runs, nor until its late
        sweep is confirmed (until then a write of its attempts may land, which the next job of the name
        could take for its own; only the sweep, which a restart resumes, deletes it)."""
        jc = self.jobs.get(name)
        if jc is not None and jc.run.state == "running":
            return p.Refused(name, f"job {name!r} is running: kill it first ('dynamr kill {name}') or wait "
                                   "for it to end")
        if jc is not None and jc.run.state != "created":
            return p.Refused(name, f"job {name!r} has ended and is being cleaned up: delete it in a moment",
                             busy=True)
        if jc is None and name not in self.finished and name not in self.older:
            return p.Refused(name, f"no job named {name!r} (see 'dynamr jobs')")
        if name in self.sweeps:
            return p.Refused(name, f"job {name!r} ended less than {self.settings.late_write_grace:g}s ago: "
                                   "writes of its attempts may still land, and are deleted then; delete it "
                                   "after that", busy=True)
        return None

    def _on_forget(self, ev: p.ForgetRequested, now: float) -> list[p.Instruction]:
        """A job ended and swept is forgotten (its tombstone stays, for reports that arrive late)."""
        refusal = self.forget_refusal(ev.name)
        if refusal is not None:
            return [refusal]
        self.jobs.pop(ev.name, None)
        self.finished.pop(ev.name, None)
        self.older.pop(ev.name, None)
        return [p.PersistForgotten(ev.name)]

    def needs(self, job: str, attempt: str) -> bool:
        """Whether what ``attempt`` wrote for ``job`` may be needed: its job is not cleaned up and started
        it. Once not, never again (attempt ids do not repeat): the janitor may delete it."""
        jc = self.jobs.get(job)
        return jc is not None and jc.run.started(attempt)

    def state_of(self, name: str) -> str:
        """A job's state ("unknown" when there is no such job)."""
        jc = self.jobs.get(name)
        if jc is not None:
            return jc.run.state
        if name in self.finished:
            return self.finished[name].state
        return self.older[name].state if name in self.older else "unknown"

    def keep_status(self, name: str, status: JobStatusView) -> None:
        """A finalized job's status is kept whole while it is among the last ``statuses_kept``; then only
        its summary (a coordinator that runs jobs for months does not hold every attempt of every one)."""
        self.finished[name] = status
        while len(self.finished) > self.settings.statuses_kept:
            oldest = next(iter(self.finished))
            self.older[oldest] = summary_of(self.finished.pop(oldest))

    def _move(self, jc: JobCore, new: str) -> None:
        if (jc.phase, new) not in PHASES:
            raise IllegalTransition(f"job {jc.run.name}: phase {jc.phase} -> {new} is not a legal move")
        jc.phase = new

    def end_job(self, jc: JobCore, now: float) -> list[p.Instruction]:
        """The job's run ended (succeeded, failed or killed): stop its attempts, then finalize it."""
        run = jc.run
        self._move(jc, "ending")
        running = self.scheduler.remove(list(run.tasks))
        for attempt, node in running.items():
            self.kills.setdefault(node, set()).add(attempt)
            self.unconfirmed.pop(attempt, None)
        jc.stopping = dict(running)
        jc.stop_deadline = now + self.settings.stop_timeout
        jc.rewrite.clear()  # no commit record is written for a job that has ended
        # kept before the cleanup, which deletes the commit records: a restart then finishes the cleanup
        out: list[p.Instruction] = [p.PersistEnded(run.name, run.state, self.wall(run.ended_at), run.error,
                                                   run.status(now) if run.state == "succeeded" else None)]
        log.info("job %s %s; %d attempt(s) to stop", run.name, run.state, len(running))
        return out + self._maybe_finalize(jc, now)

    def _maybe_finalize(self, jc: JobCore, now: float) -> list[p.Instruction]:
        if jc.phase != "ending" or jc.writing or now < jc.retry_at:
            return []
        if jc.stopping and now < jc.stop_deadline:
            return []
        run = jc.run
        self._move(jc, "finalizing")
        return [p.Finalize(job=run.name, succeeded=run.state == "succeeded", plan=run.plan,
                           attempts=tuple(run.attempt_outputs()), tasks=tuple(sorted(run.tasks)))]

    def _on_finalized(self, ev: p.FinalizeDone, now: float) -> list[p.Instruction]:
        jc = self.jobs.get(ev.job)
        if jc is None or jc.phase != "finalizing":
            return []
        self._move(jc, "finalized")
        for attempt in jc.stopping:  # the final status shows every attempt, these as not stopped in time
            jc.run.ended_late(attempt, False, "still running when the job was cleaned up (its outputs are "
                              "deleted when it ends)", now)
        jc.run.finalized = True
        status = jc.run.status(now)
        self.keep_status(ev.job, status)
        plan = jc.run.plan
        self.tombstones[ev.job] = Tombstone(max((s.reducers for s in plan.steps), default=1) or 1,
                                            plan.local_intermediate)
        for attempt, node in jc.stopping.items():  # still running somewhere: collected when it ends
            self.stragglers[attempt] = node
        del self.jobs[ev.job]
        out: list[p.Instruction] = [p.PersistFinalized(ev.job, jc.run.state, self.wall(jc.run.ended_at), status)]
        reported = {a for a, h in jc.run.history.items() if h.ok}
        return out + self.sweep_later(ev.job, [a for a, _ in jc.run.attempt_outputs() if a not in reported],
                                       now, sorted(jc.uncertain))

    def sweep_later(self, job: str, attempts: list[str], now: float,
                     uncertain: Sequence[tuple[str, str]] = ()) -> list[p.Instruction]:
        """Attempts of a finalized job that never reported success may have writes in flight: their outputs
        are deleted once more, ``late_write_grace`` later; so are commit records whose write failed or lost
        its answer (``uncertain``). The attempts are kept (a restart sweeps again) until that is confirmed."""
        pending = {a for a in attempts if a not in self.stragglers}
        for attempt in pending:
            self._collect(attempt, now, at=now + self.settings.late_write_grace)
        for task, attempt in uncertain:
            key = p.commit_garbage(task, attempt)
            self.garbage[key] = (p.DeleteCommit(job, task, attempt, confirm=True), now + self.settings.late_write_grace)
            pending.add(key)
        if not pending:
            return [p.PersistSwept(job)]
        self.sweeps[job] = pending
        return []

    def _on_finalize_failed(self, ev: p.FinalizeFailed, now: float) -> list[p.Instruction]:
        jc = self.jobs.get(ev.job)
        if jc is None or jc.phase != "finalizing":
            return []
        log.warning("job %s: cleanup failed, trying again: %s", ev.job, ev.error)
        self._move(jc, "ending")
        jc.retry_at = now + self.settings.commit_retry
        return []

    # --- commits -------------------------------------------------------------------------------------

    def write_commit(self, jc: JobCore, record: im.Commit) -> p.WriteCommit:
        jc.writing[record.task_id] = record
        return p.WriteCommit(jc.run.name, record, frozenset(jc.run.superseded), jc.run.publish_path(record.task_id))

    def _on_commit_written(self, ev: p.CommitWritten, now: float) -> list[p.Instruction]:
        jc = self.jobs.get(ev.job)
        if jc is None or jc.writing.get(ev.record.task_id) != ev.record:
            return []
        del jc.writing[ev.record.task_id]
        run = jc.run
        if jc.phase != "active":  # the job ended while the write was in flight: cleanup deletes it
            return self._maybe_finalize(jc, now)
        in_force = ev.record if ev.in_force.attempt in run.superseded else ev.in_force  # (void: cannot be)
        if not run.started(in_force.attempt):  # a deleted job's of the same name, landed late: void, replaced
            log.warning("job %s: a record of %s not its own was in force: written again", ev.job, in_force.attempt)
            run.superseded[in_force.attempt] = in_force.task_id
            return [self.write_commit(jc, ev.record)]
        out: list[p.Instruction] = []
        if ev.lost:  # written, but the output it names is gone: the record is void, the task runs again
            log.warning("job %s: the output of %s was lost before it was published: %s", ev.job, in_force.attempt,
                        ev.lost)
            run.lost_unpublished(in_force, ev.lost, now)
            out.append(p.DeleteCommit(run.name, in_force.task_id, in_force.attempt))
        else:
            run.committed(in_force, now)
        if in_force.attempt != ev.record.attempt:  # an earlier incarnation's attempt had committed it
            out.append(p.DeleteOutputs(run.name, ev.record.attempt, ev.record.partitions, run.plan.local_intermediate))
        if run.state in ENDED:
            out += self.end_job(jc, now)
        return out

    def _on_commit_failed(self, ev: p.CommitFailed, now: float) -> list[p.Instruction]:
        jc = self.jobs.get(ev.job)
        if jc is None or jc.writing.get(ev.record.task_id) != ev.record:
            return []
        del jc.writing[ev.record.task_id]
        jc.uncertain.add((ev.record.task_id, ev.record.attempt))  # it may land later all the same
        if jc.phase != "active":
            return self._maybe_finalize(jc, now)
        log.warning("job %s: commit record of %s not written (%s); trying again", ev.job, ev.record.task_id,
                    ev.error)
        jc.rewrite[ev.record.task_id] = (ev.record, now + self.settings.commit_retry)
        return []

    # --- workers -------------------------------------------------------------------------------------

    def _on_poll(self, ev: p.WorkerPolled, now: float) -> list[p.Instruction]:
        node = ev.node
        out: list[p.Instruction] = []
        view = self.nodes.get(node)
        if view is None or view.incarnation != ev.incarnation:
            if view is not None:  # it restarted faster than the timeout could notice
                out += self._node_lost(node, f"lost with node {node} (it restarted)", now)
            for attempt in [a for a, n in self.stragglers.items() if n == node]:
                # a new process: the old one's attempts are gone (their last writes may still land)
                out += self._collect(attempt, now, at=now + self.settings.late_write_grace)
            view = self.nodes[node] = NodeView(ev.incarnation)
            self.kills.pop(node, None)
        fresh = ev.seq > view.seq
        self.scheduler.heartbeat(node, now)
        acked = []
        for report in ev.reports:
            out += self._report(node, report, now)
            acked.append(report.attempt)
        if not fresh:  # a repeated or overtaken poll: its running list is stale, assign nothing
            return [p.ReplyToWorker(node, ev.seq, (), (), tuple(acked)), *out]
        view.seq = ev.seq
        view.slots = ev.free_slots + len(ev.running)
        listed = set(ev.running)
        kills = self.kills.setdefault(node, set())
        kills.intersection_update(listed)  # what it no longer lists has stopped
        for attempt in list(self.unconfirmed):
            owner, seq = self.unconfirmed[attempt]
            if owner != node:
                continue
            if attempt in listed:
                del self.unconfirmed[attempt]
            elif ev.seq > seq:  # the reply that carried it never arrived
                del self.unconfirmed[attempt]
                out += self._write_off(attempt, f"attempt {attempt} never reached node {node}", now)
        for attempt in ev.running:
            if not self.scheduler.is_running(attempt, node) and not self._adopt(attempt, node, now, out):
                kills.add(attempt)  # nobody wants it: its job ended, or it was written off
        for attempt in self.scheduler.running_on(node):
            if attempt not in listed and attempt not in self.unconfirmed:
                out += self._write_off(attempt, f"node {node} no longer runs attempt {attempt}", now)
        for attempt, fraction in zip(ev.running, ev.progress, strict=False):
            self.scheduler.progress(attempt, fraction)
        for jc in list(self.jobs.values()):
            for attempt in [a for a, n in jc.stopping.items() if n == node and a not in listed]:
                del jc.stopping[attempt]  # gone without a report: it never reached the node, or died with it
                jc.run.ended_late(attempt, False, f"not running on node {node} when the job ended", now)
            out += self._maybe_finalize(jc, now)
        for attempt in [a for a, n in self.stragglers.items() if n == node and a not in listed]:
            out += self._collect(attempt, now, at=now + self.settings.late_write_grace)
        specs: list[TaskSpec] = []
        if now >= self.assign_after:
            for jc in self.jobs.values():
                jc.run.gate()
            for assignment in self.scheduler.offer(node, ev.free_slots, now):
                jc = self.jobs[job_of(assignment.task_id)]
                specs.append(jc.run.spec_for(assignment, now, progress_timeout=self.settings.task_timeout))
                self.unconfirmed[assignment.attempt_id] = (node, ev.seq)
                out.append(p.PersistAttempt(jc.run.name, assignment.task_id, assignment.attempt_id, node,
                                            self.wall(now)))
        soon = ev.free_slots > len(specs) and any(jc.writing for jc in self.jobs.values())
        return [p.ReplyToWorker(node, ev.seq, tuple(specs), tuple(sorted(kills)), tuple(acked), soon), *out]

    def may_hold(self, node: str, incarnation: str, now: float) -> bool:
        """Whether an idle worker's poll would only be answered with nothing now (no task it could take,
        nothing to settle: a restart, an assignment, a kill, a straggler), so the shell may keep it until
        this changes or its hold runs out: that changes no outcome, only when it hears of its next task."""
        view = self.nodes.get(node)
        if view is None or view.incarnation != incarnation or self.kills.get(node):
            return False
        if self.scheduler.running_on(node) or any(owner == node for owner, _ in self.unconfirmed.values()):
            return False
        if node in self.stragglers.values() or any(node in jc.stopping.values() for jc in self.jobs.values()):
            return False
        return now < self.assign_after or not self.scheduler.has_pending_for(node, now)

    def hold_for(self, asked: float) -> float:
        """The longest the shell may keep a poll whose worker allows ``asked`` seconds: a third of the time
        after which a silent node counts as dead, so holding never makes a live worker look dead."""
        return max(0.0, min(asked, self.settings.node_timeout / 3))

    def _adopt(self, attempt: str, node: str, now: float, out: list[p.Instruction]) -> bool:
        """An attempt from before a restart that is still wanted becomes a running attempt of its task."""
        if self.scheduler.knows(attempt):
            return False
        jc = self.jobs.get(job_of(attempt))
        if jc is None or jc.phase != "active" or jc.run.state != "running" or not jc.run.started(attempt):
            return False  # (not started for this job: an earlier job of the same name's, deleted since)
        if not self.scheduler.adopt(task_of(attempt), attempt, node, now):
            return False
        jc.run.adopted(attempt, node, now)
        out.append(p.PersistAttempt(jc.run.name, task_of(attempt), attempt, node, self.wall(now)))
        log.info("adopted attempt %s running on %s from before the restart", attempt, node)
        return True

    def _write_off(self, attempt: str, reason: str, now: float) -> list[p.Instruction]:
        """One attempt is gone without a report: its task is re-queued (nothing counted)."""
        if not self.scheduler.attempt_lost(attempt, reason):
            return []
        log.warning("%s; its task is re-queued", reason)
        jc = self.jobs.get(job_of(attempt))
        if jc is not None:
            jc.run.lost(attempt, reason, now)
        return [p.PersistAttemptEnded(attempt, False, reason, self.wall(now), cause="lost")]

    def _node_lost(self, node: str, reason: str, now: float) -> list[p.Instruction]:
        lost = self.scheduler.node_lost(node)
        out: list[p.Instruction] = []
        for attempt in lost:
            self.unconfirmed.pop(attempt, None)
            jc = self.jobs.get(job_of(attempt))
            if jc is not None:
                jc.run.lost(attempt, reason, now)
            out.append(p.PersistAttemptEnded(attempt, False, reason, self.wall(now), cause="lost"))
        if lost:
            log.warning("node %s: %d running attempt(s) re-queued (%s)", node, len(lost), reason)
        for attempt in [a for a, (n, _) in self.unconfirmed.items() if n == node]:
            del self.unconfirmed[attempt]
        return out

    def _report(self, node: str, report: AttemptReport, now: float) -> list[p.Instruction]:
        """Handle how an attempt ended, once per attempt (a repeated report only needs its ack)."""
        name = job_of(report.attempt)
        self.unconfirmed.pop(report.attempt, None)
        jc = self.jobs.get(name)
        if jc is None:  # a straggler of a finished job: a success means its writes are done, else they may land
            return self._collect(report.attempt, now,
                                 at=None if report.ok else now + self.settings.late_write_grace)
        if report.attempt in jc.reported:
            return []
        if not jc.run.started(report.attempt):  # an earlier job of the same name's, deleted since: as above
            return self._collect(report.attempt, now, at=None if report.ok else now + self.settings.late_write_grace)
        jc.reported.add(report.attempt)
        jc.stopping.pop(report.attempt, None)
        run = jc.run
        out: list[p.Instruction] = [p.PersistAttemptEnded(report.attempt, report.ok, report.error, self.wall(now),
                                                          report.output, report.traceback, report.cause)]
        if jc.phase != "active":  # its outputs are deleted with the job's
            run.ended_late(report.attempt, report.ok, report.error, now)
            return out + self._maybe_finalize(jc, now)
        if report.ok:
            if not self.scheduler.knows(report.attempt):  # ended before a restart, never acknowledged
                self._adopt(report.attempt, node, now, out)
            record = run.on_success(report, now)
            if record is None:  # a loser, an attempt written off, or the committed attempt again
                if self.scheduler.committed_attempt(report.attempt) != report.attempt:
                    out.append(p.DeleteOutputs(name, report.attempt, report.partitions, run.plan.local_intermediate))
                return out
            for attempt, other in self.scheduler.other_attempts(report.attempt).items():
                self.kills.setdefault(other, set()).add(attempt)  # backups that lost the race
            return [*out, self.write_commit(jc, record)]
        if report.cause == "input_lost":
            producer = run.on_input_lost(report, now)
            if producer is not None:
                out.append(p.DeleteCommit(name, producer))
        elif report.cause in ("store", "killed"):
            run.on_uncounted(report, now)
        else:
            run.on_failure(report, now)
        if run.state in ENDED:
            out += self.end_job(jc, now)
        return out

    def _collect(self, attempt: str, now: float, at: float | None = None) -> list[p.Instruction]:
        """An attempt of a job already cleaned up has ended (reported, or its node lost it): whatever it
        wrote goes, every partition a map may have started (a killed attempt reports none) or a whole
        output, until confirmed. With ``at``, the delete waits until then (for writes still in flight)."""
        self.stragglers.pop(attempt, None)
        tomb = self.tombstones.get(job_of(attempt))
        if tomb is None:
            return []
        partitions = tuple(range(tomb.reducers)) if "-m" in task_of(attempt) else ()
        ins = p.DeleteOutputs(job_of(attempt), attempt, partitions, tomb.local_intermediate, confirm=True)
        if at is not None:
            if attempt not in self.garbage or self.garbage[attempt][1] < at:
                self.garbage[attempt] = (ins, at)
            return []
        if attempt in self.garbage and self.garbage[attempt][1] == float("inf"):
            return []  # (a delete waiting for writes in flight goes now: a success report says they are done)
        self.garbage[attempt] = (ins, float("inf"))  # in flight
        return [ins]

    def _on_outputs_deleted(self, ev: p.OutputsDeleted, now: float) -> list[p.Instruction]:
        self.garbage.pop(ev.attempt, None)
        pending = self.sweeps.get(ev.job)
        if pending is None or ev.attempt not in pending:
            return []
        pending.discard(ev.attempt)
        if pending:
            return []
        del self.sweeps[ev.job]
        return [p.PersistSwept(ev.job)]

    def _on_delete_failed(self, ev: p.DeleteFailed, now: float) -> list[p.Instruction]:
        if ev.attempt in self.garbage:
            self.garbage[ev.attempt] = (self.garbage[ev.attempt][0], now + self.settings.commit_retry)
        return []

    # --- time ----------------------------------------------------------------------------------------

    def _on_tick(self, ev: p.Tick, now: float) -> list[p.Instruction]:
        out: list[p.Instruction] = []
        for node in self.scheduler.dead_nodes_at(now):
            out += self._node_lost(node, f"lost with node {node} (no heartbeat for "
                                         f"{self.settings.node_timeout:g}s)", now)
            self.nodes.pop(node, None)
            self.kills.pop(node, None)
        for attempt, (ins, due) in list(self.garbage.items()):
            if now >= due:
                self.garbage[attempt] = (ins, float("inf"))
                out.append(ins)
        for jc in list(self.jobs.values()):
            if jc.phase == "active":
                for task_id, (record, due) in list(jc.rewrite.items()):
                    if now >= due and task_id not in jc.writing:
                        del jc.rewrite[task_id]
                        out.append(self.write_commit(jc, record))
            else:
                out += self._maybe_finalize(jc, now)
        return out
