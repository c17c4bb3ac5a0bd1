"""The simulated coordinator shell: it carries out the real core's instructions against the simulated
store and network, with faults (store calls that fail, time out, or land late; one-shot faults placed on
commit writes), and keeps what the coordinator's SQLite file would keep across its crashes (:class:`Durable`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce import protocol as p
from dynamr.mapreduce import restart
from dynamr.mapreduce.control import CoordinatorCore
from dynamr.mapreduce.jobrun import task_of
from dynamr.mapreduce.scheduler import TaskState
from dynamr.mapreduce.workerstate import keepable
from dynamr.rpc.messages import WorkerHeartbeat

if TYPE_CHECKING:
    from tests.sim.world import SimJob, World


class Durable:
    """What the coordinator's SQLite file keeps across its crashes."""

    def __init__(self) -> None:
        self.incarnation = 0
        self.jobs: dict[str, dict[str, Any]] = {}
        self.attempts: dict[str, dict[str, Any]] = {}

    def apply(self, ins: p.Instruction) -> None:
        if isinstance(ins, p.PersistJob):
            self.jobs[ins.name] = {"plan": ins.plan, "state": "created", "started": 0.0, "ended": 0.0,
                                   "error": None, "final": None, "at_end": None}
        elif isinstance(ins, p.PersistStarted):
            self.jobs[ins.name].update(state="running", started=ins.started)
        elif isinstance(ins, p.PersistEnded):
            self.jobs[ins.name].update(state=ins.state, ended=ins.ended, error=ins.error, at_end=ins.status)
        elif isinstance(ins, p.PersistFinalized):
            self.jobs[ins.name].update(state=ins.state, ended=ins.ended, final=ins.status, at_end=None)
        elif isinstance(ins, p.PersistSwept):
            for attempt in [a for a, row in self.attempts.items() if row["job"] == ins.name]:
                del self.attempts[attempt]
        elif isinstance(ins, p.PersistAttempt):
            self.attempts.setdefault(ins.attempt, {"job": ins.job, "node": ins.node, "started": ins.started,
                                                   "ended": None, "ok": None, "error": ""})
        elif isinstance(ins, p.PersistForgotten):
            self.jobs.pop(ins.name, None)
            for attempt in [a for a, row in self.attempts.items() if row["job"] == ins.name]:
                del self.attempts[attempt]
        elif isinstance(ins, p.PersistAttemptEnded) and ins.attempt in self.attempts:
            self.attempts[ins.attempt].update(ended=ins.ended, ok=ins.ok, error=ins.error)

    def views(self) -> list[p.StoredJobView]:
        out = []
        for name, row in self.jobs.items():
            attempts = tuple((a, r["node"], r["started"], r["ended"], r["ok"], r["error"])
                             for a, r in self.attempts.items() if r["job"] == name)
            out.append(p.StoredJobView(name, row["plan"], row["state"], row["started"], row["ended"], row["error"],
                                       row["final"], attempts, row["at_end"]))
        return out


#: seconds after its answer was lost that a commit write may still land (the real store's hinted handoff and
#: paused replicas can hold a write that long; the cleanup may have run by then)
LATE_COMMIT = 4.0


class SimCoordinator:
    """The coordinator's asyncio shell, simulated: carries out the core's instructions with faults."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.core: CoordinatorCore | None = None
        self.generation = 0
        self.pending_submits: list[SimJob] = []
        #: node -> the idle worker's poll kept while the core has nothing for it (as the shell's _hold)
        self.parked: dict[str, WorkerHeartbeat] = {}
        #: the idle poll being answered, and whether it was kept (its reply then says "again")
        self.answering: tuple[WorkerHeartbeat, bool] | None = None

    def finished_names(self) -> set[str]:
        return {n for n, row in self.w.durable.jobs.items() if row["final"] is not None}

    def boot(self) -> None:
        w = self.w
        self.generation += 1
        w.durable.incarnation += 1
        core = CoordinatorCore(w.sc.settings, incarnation=w.durable.incarnation)
        w.log(f"BOOT coordinator incarnation {w.durable.incarnation}")
        for stored in w.durable.views():
            todo = restart.restore_job(core, stored, None, w.now)
            looked: dict[str, im.Commit | None] = {}
            instructions: list[p.Instruction] = []
            while todo:
                found = {t: self._read_commit(stored.name, t) for t in todo}
                looked.update(found)
                todo, more = restart.replayed(core, stored.name, found, stored, w.now)
                instructions += more
            self.core = core
            self._carry_out(instructions)
        self.core = core
        self._carry_out(restart.after_restore(core, w.now))
        for job in self.pending_submits:
            self.submit(job)
        self.pending_submits = []
        self._tick(self.generation)
        if w.sc.janitor > 0:
            w.at(w.sc.janitor, lambda g=self.generation: self._janitor(g))

    def crash(self) -> None:
        self.core = None
        self.generation += 1
        self.parked.clear()  # kept polls die with the process: their workers time out and poll again

    def _tick(self, generation: int) -> None:
        if generation != self.generation or self.core is None:
            return
        self._carry_out(self.core.handle(p.Tick(), self.w.now))
        self.w.at(0.25, lambda: self._tick(generation))

    def _janitor(self, generation: int) -> None:
        """A round of the coordinator's janitor (as ``Janitor.round``): every intermediate key
        whose attempt no job needs goes; a commit record only of a job no longer running."""
        core, w = self.core, self.w
        if generation != self.generation or core is None:
            return
        if w.janitor_rng.random() >= w.sc.faults.store_fail:  # the scan of every replica
            pending = set(core.garbage) | set(core.stragglers) | {a for s in core.sweeps.values() for a in s}
            for key, value in list(w.store.data.items()):
                kind, _, rest = key.partition("/")
                job, _, attempt = rest.partition("/")
                tracked = attempt  # how the core's pending deletes name it
                if kind == "out":
                    attempt = tracked = attempt.rpartition("/")[0]
                elif kind == "commit" and isinstance(value, im.Commit) and job not in core.jobs:
                    attempt, tracked = value.attempt, p.commit_garbage(value.task_id, value.attempt)
                elif kind != "whole":
                    continue
                if not core.needs(job, attempt):
                    w.log(f"JANITOR deletes {key}{'' if tracked in pending else ' (no delete of it was pending)'}")
                    if tracked not in pending and key not in w.very_late:  # it had lost track: only a crash may
                        w.janitor_rescued.append(key)
                    del w.store.data[key]
        w.at(w.sc.janitor, lambda: self._janitor(generation))

    def _read_commit(self, job: str, task: str) -> im.Commit | None:
        value = self.w.store.data.get(f"commit/{job}/{task}")
        return value if isinstance(value, im.Commit) else None

    # --- requests --------------------------------------------------------------------------------

    def submit(self, job: SimJob) -> None:
        if self.core is None:
            self.pending_submits.append(job)
            return
        self.w.log(f"SUBMIT {job.name}: {len(job.plan.steps)} step(s), inputs {job.plan.inputs}")
        self._carry_out(self.core.handle(p.JobSubmitted(job.name, job.plan), self.w.now))

    def delete(self, name: str) -> bool:
        """The user deletes an ended job (``dynamr job delete``): refused (False) while it is not yet cleaned
        up; else its leftover objects are swept (best effort) and the core forgets it."""
        core = self.core
        if core is None or core.forget_refusal(name) is not None:
            return False
        w = self.w
        if w.rng.random() >= w.sc.faults.store_fail:  # the scan of every replica for the job's objects
            for key in [k for k in w.store.data if k.startswith((f"out/{name}/", f"whole/{name}/"))]:
                del w.store.data[key]
        instructions = core.handle(p.ForgetRequested(name), w.now)
        if any(isinstance(ins, p.Refused) for ins in instructions):
            return False
        w.log(f"DELETE {name}")
        self._carry_out(instructions)
        return True

    def kill(self, name: str) -> None:
        if self.core is None:
            self.w.at(0.5, lambda: self.kill(name))
            return
        self.w.log(f"KILL {name}")
        self._carry_out(self.core.handle(p.KillRequested(name), self.w.now))

    def receive_poll(self, msg: WorkerHeartbeat) -> None:
        if self.core is None:
            return  # the coordinator is down: the poll is lost
        core = self.core
        if keepable(msg) and core.may_hold(msg.node_id, msg.incarnation, self.w.now):
            self.parked[msg.node_id] = msg
            generation = self.generation
            hold = core.hold_for(msg.hold)
            ready = core.scheduler.next_ready(self.w.now)  # as the coordinator: woken when a task backing off
            if ready is not None:  # may go (its poll is then answered only if may_hold says so)
                self.w.at(min(hold, ready - self.w.now), lambda: self._recheck(msg, generation))
            self.w.at(hold, lambda: self._release(msg, generation))
            return
        self._answer(msg, held=False)

    def _recheck(self, msg: WorkerHeartbeat, generation: int) -> None:
        """A kept poll is looked at again when a task that was backing off may go."""
        if self.core is not None and not self.core.may_hold(msg.node_id, msg.incarnation, self.w.now):
            self._release(msg, generation)

    def _release(self, msg: WorkerHeartbeat, generation: int) -> None:
        """A kept poll is answered: its hold ran out, or the core has something for its worker."""
        if generation != self.generation or self.parked.get(msg.node_id) is not msg:
            return
        del self.parked[msg.node_id]
        self._answer(msg, held=True)

    def _answer(self, msg: WorkerHeartbeat, held: bool) -> None:
        assert self.core is not None
        ev = p.WorkerPolled(msg.node_id, msg.incarnation, msg.seq, msg.free_slots, msg.running, msg.progress,
                            msg.reports)
        self.answering = (msg, held) if keepable(msg) else None
        try:
            self._carry_out(self.core.handle(ev, self.w.now))
        finally:
            self.answering = None

    # --- instructions ----------------------------------------------------------------------------

    def _carry_out(self, instructions: list[p.Instruction]) -> None:
        self._carry_out_all(instructions)
        if self.core is not None:
            tasks = self.core.scheduler.tasks  # the scheduler's indexes are never stale
            assert set(self.core.scheduler._pending) == {t for t, task in tasks.items()
                                                          if task.state is TaskState.PENDING}
            assert self.core.scheduler._running_at == {a: n for task in tasks.values() for a, n in task.running.items()}
            # the core moved on: a kept poll whose worker now has work is answered
            for node, msg in list(self.parked.items()):
                if not self.core.may_hold(node, msg.incarnation, self.w.now):
                    self._release(msg, self.generation)

    def _carry_out_all(self, instructions: list[p.Instruction]) -> None:
        for ins in instructions:
            if isinstance(ins, p.PERSIST):
                self.w.durable.apply(ins)
                if isinstance(ins, p.PersistAttempt):
                    self.w.started.setdefault((self.generation, ins.job), set()).add(ins.attempt)
                if isinstance(ins, p.PersistFinalized):
                    self.w.finalized[ins.name] += 1
                    output = self.w.durable.jobs[ins.name]["plan"].output
                    self.w.parts_at_end[output] = {k: a for k, a in self.w.part_writer.items()
                                                   if k.startswith(f"part:{output}/")}
                    self.w.log(f"FINALIZED {ins.name} {ins.state}")
                    self._check_listed(ins)
            elif isinstance(ins, p.ReplyToWorker):
                self._reply(ins)
            else:
                self._effect(ins)

    def _check_listed(self, ins: p.PersistFinalized) -> None:
        """The final status lists every attempt this incarnation started (how it ended), each once."""
        listed = [a.attempt for a in ins.status.attempts]
        started = self.w.started.get((self.generation, ins.name), set())
        if len(listed) != len(set(listed)):
            self.w.unlisted.append(f"{ins.name}: an attempt listed twice")
        if len(listed) < 200 and started - set(listed):
            self.w.unlisted.append(f"{ins.name}: attempts not in its final status: {sorted(started - set(listed))}")

    def _reply(self, ins: p.ReplyToWorker) -> None:
        w = self.w
        if ins.assignments and w.once("drop_assignment"):
            w.log(f"drop reply {ins.seq} to {ins.node} (it carried {len(ins.assignments)} assignment(s))")
            return
        for spec in ins.assignments:
            task = task_of(spec.attempt)
            record = w.store.data.get(f"commit/{spec.job}/{task}")
            if isinstance(record, im.Commit) and task not in w.lost_outputs and \
                    f"commit {record.attempt}" not in w.landed_late and record.attempt not in w.retired_attempts:
                w.reruns.append(f"{spec.attempt} (committed {record.attempt})")
            w.log(f"ASSIGN {spec.attempt} -> {ins.node}")
        node = w.nodes[ins.node]
        again = False
        if self.answering is not None and self.answering[0].node_id == ins.node and self.answering[0].seq == ins.seq:
            msg, held = self.answering  # as the shell: the next poll will be kept
            again = held or (self.core is not None and self.core.may_hold(ins.node, msg.incarnation, w.now))
        w.send(lambda: node.receive_reply(ins, again), f"reply {ins.seq} to {ins.node}{' (again)' if again else ''}")

    def _apply_commit(self, ins: p.WriteCommit) -> im.Commit:
        """The store side of writing a commit record: the first record not superseded stays in force."""
        key = f"commit/{ins.job}/{ins.record.task_id}"
        current = self.w.store.data.get(key)
        if isinstance(current, im.Commit) and current.attempt not in ins.superseded:
            return current
        data = self.w.store.data
        data[key] = ins.record
        record = ins.record
        there = (all(f"out/{ins.job}/{record.attempt}/{part}" in data for part in record.partitions)
                 if "-m" in record.task_id and record.partitions else f"whole/{ins.job}/{record.attempt}" in data)
        if there:  # a record naming an output lost before it was written does not count as a fresh commit
            self.w.lost_outputs.discard(record.task_id)
        return record

    def _commit_and_publish(self, ins: p.WriteCommit) -> tuple[im.Commit, str]:
        """The commit record, then (``publish``) the part file made of the attempt in force's whole output:
        (the record in force, why it could not be published)."""
        in_force = self._apply_commit(ins)
        if not ins.publish:
            return in_force, ""
        data = self.w.store.data
        whole = data.get(f"whole/{ins.job}/{in_force.attempt}")
        if whole is None:
            return in_force, f"NotFoundError: no object for {in_force.attempt}"
        part = f"part:{ins.publish}"
        data[part] = whole
        self.w.part_writer[part] = in_force.attempt
        return in_force, ""

    def _feed_if(self, generation: int, event: p.Event) -> None:
        if generation == self.generation and self.core is not None:
            self._carry_out(self.core.handle(event, self.w.now))

    def _store_call(self, apply: Callable[[], Any], done: Callable[[Any], p.Event], failed: Callable[[str], p.Event],
                    what: str, late: float = 0.0) -> None:
        """A store call: it takes effect at a random point before its answer, may fail before taking effect,
        or take effect and lose its answer; if the coordinator dies meanwhile, the effect still happens. With
        ``late``, a call whose answer is lost may take effect up to that many seconds after it (a write held
        by a paused replica, or carried by a hint)."""
        w, f, generation = self.w, self.w.sc.faults, self.generation
        roll = w.rng.random()
        latency = w.rng.uniform(0.002, 0.05)
        if roll < f.store_fail:
            w.log(f"store FAIL {what}")
            w.at(latency, lambda: self._feed_if(generation, failed("QuorumError: 1 of 2 replicas answered")))
            return
        result: list[Any] = []
        timed_out = roll < f.store_fail + f.store_timeout
        lands = w.rng.uniform(0.0, latency + (late if timed_out else 0.0))
        if lands > latency + 1.0:  # after its failure was reported: a restart's replay may have missed it
            w.landed_late.add(what)

        def land() -> None:
            if generation != self.generation and self.core is not None:  # after the next one had looked
                w.landed_late.add(what)
            result.append(apply())

        w.at(lands, land)
        if roll < f.store_fail + f.store_timeout:
            w.log(f"store TIMEOUT (applied) {what}")
            w.at(latency + 1.0, lambda: self._feed_if(generation, failed("DeadlineExceededError: no answer in time")))
            return
        w.at(latency, lambda: self._feed_if(generation, done(result[0])))

    def _effect(self, ins: p.Instruction) -> None:
        w = self.w
        data = w.store.data
        if isinstance(ins, p.Refused):
            w.log(f"REFUSED {ins.job}: {ins.message}")
        elif isinstance(ins, p.WriteCommit):
            key = f"commit/{ins.job}/{ins.record.task_id}"
            core = self.core
            last = core is not None and not any(t.running for t in core.scheduler.tasks.values() if t.job == ins.job)
            if last and w.once("kill_on_commit"):  # the job's last commit, nothing else running: a pure race
                w.at(0.0, lambda: self.kill(ins.job))
                w.at(0.3, lambda g=self.generation: self._feed_if(  # a slow write (it lands in any case)
                    g, p.CommitWritten(ins.job, ins.record, *self._commit_and_publish(ins))))
                return
            if w.once("commit_fail"):
                w.at(0.01, lambda g=self.generation: self._feed_if(g, p.CommitFailed(ins.job, ins.record, "fault")))
                return
            if ins.publish and w.once("publish_crash"):  # the record is written, the part not yet published
                self._apply_commit(ins)
                self.w.crash_coordinator(1.0)
                return
            if ins.publish and w.once("lose_before_publish"):  # every replica of the output dies meanwhile
                w.lose_output(f"whole/{ins.job}/{ins.record.attempt}")
            if w.once("commit_crash"):
                current = data.get(key)
                if not (isinstance(current, im.Commit) and current.attempt not in ins.superseded):
                    data[key] = ins.record
                self.w.crash_coordinator(1.0)
                return

            self._store_call(lambda: self._commit_and_publish(ins),
                             lambda r: p.CommitWritten(ins.job, ins.record, *r),
                             lambda e: p.CommitFailed(ins.job, ins.record, e), f"commit {ins.record.attempt}",
                             late=LATE_COMMIT)
        elif isinstance(ins, p.DeleteOutputs):
            def delete() -> None:
                for part in ins.partitions:
                    data.pop(f"out/{ins.job}/{ins.attempt}/{part}", None)
                data.pop(f"whole/{ins.job}/{ins.attempt}", None)

            if ins.confirm:
                self._store_call(delete, lambda _: p.OutputsDeleted(ins.job, ins.attempt),
                                 lambda e: p.DeleteFailed(ins.job, ins.attempt, e), f"delete {ins.attempt}")
            elif w.rng.random() >= w.sc.faults.store_fail:
                delete()
        elif isinstance(ins, p.DeleteCommit) and ins.confirm:
            def delete_if_named() -> None:
                key = f"commit/{ins.job}/{ins.task}"
                record = data.get(key)
                if isinstance(record, im.Commit) and record.attempt == ins.attempt:
                    del data[key]

            named = p.commit_garbage(ins.task, ins.attempt)
            self._store_call(delete_if_named, lambda _: p.OutputsDeleted(ins.job, named),
                             lambda e: p.DeleteFailed(ins.job, named, e), f"delete commit {ins.task}")
        elif isinstance(ins, p.DeleteCommit):
            if w.rng.random() >= w.sc.faults.store_fail:
                data.pop(f"commit/{ins.job}/{ins.task}", None)
        elif isinstance(ins, p.Finalize):
            def cleanup() -> None:
                if ins.succeeded:
                    data[f"success:{ins.plan.output}"] = True
                for attempt, parts in ins.attempts:
                    for part in parts:
                        data.pop(f"out/{ins.job}/{attempt}/{part}", None)
                    data.pop(f"whole/{ins.job}/{attempt}", None)
                for task in ins.tasks:
                    data.pop(f"commit/{ins.job}/{task}", None)

            w.log(f"FINALIZE {ins.job} succeeded={ins.succeeded}")
            self._store_call(cleanup, lambda _: p.FinalizeDone(ins.job), lambda e: p.FinalizeFailed(ins.job, e),
                             f"cleanup {ins.job}")
        else:
            raise AssertionError(f"unknown instruction {ins!r}")
