"""A deterministic simulation of the MapReduce control plane: the real state machines in a seeded world.

The coordinator's core (:class:`~dynamr.mapreduce.control.CoordinatorCore`) and each node's
:class:`~dynamr.mapreduce.workerstate.WorkerState` run unchanged; around them this module simulates what
the asyncio shells do, on a virtual clock: a network that delays, drops, duplicates and reorders messages;
a store whose calls fail or time out (sometimes after taking effect); task attempts that take random time,
fail in user code or on store errors, and find inputs lost; nodes crashed, paused and restarted with new
incarnations; the coordinator crashed and restarted from its durable state (what SQLite keeps).

Everything random comes from one ``random.Random(seed)``, and events run in (time, sequence) order, so a seed
replays exactly; every step is appended to a trace. After a run, :meth:`World.check` asserts the invariants:
every job ends, succeeded, within the deadline; its output equals the sequential reference; no task runs
again once committed unless its output was lost; each job is finalized once; no intermediate key remains;
each final status lists every attempt its coordinator started, once; and once every job has ended and been
swept, neither the coordinator, its scheduler, its durable state nor a node holds anything for them.
"""

from __future__ import annotations

import heapq
import itertools
import random
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce import protocol as p
from dynamr.mapreduce.control import CoordinatorCore
from dynamr.mapreduce.corestate import CoreSettings
from dynamr.mapreduce.jobrun import JobPlan, StepPlan, task_of
from dynamr.mapreduce.scheduler import TaskState
from dynamr.mapreduce.workerstate import Kill, Start, WorkerState, keepable
from dynamr.rpc.messages import AttemptReport, TaskSpec, WorkerHeartbeat

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu",
         "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"]


class Violation(AssertionError):
    pass


@dataclass
class Faults:
    """Probabilities and rates of each fault (all zero: a quiet run)."""

    drop: float = 0.0  # a message is lost
    duplicate: float = 0.0  # a message arrives twice
    slow: float = 0.0  # a message takes 0.2-2 s (reorders it)
    store_fail: float = 0.0  # a store call fails before taking effect
    store_timeout: float = 0.0  # a store call takes effect but its answer is lost
    user_fail: float = 0.0  # an attempt raises in user code (only a task's first two attempts)
    task_store_fail: float = 0.0  # an attempt fails on a store error
    node_crash: float = 0.0  # per node per second: killed (restarted 0.1-8 s later)
    node_pause: float = 0.0  # per node per second: paused for 0.5-12 s
    coord_crash: float = 0.0  # per second: the coordinator is killed (restarted 0.1-3 s later)
    output_loss: float = 0.0  # per second: every replica of one committed map output is lost
    straggler: float = 0.0  # an attempt runs 10x longer


@dataclass
class SimJob:
    name: str
    plan: JobPlan
    reference: Counter[str]
    submit_at: float = 0.0
    kill_at: float | None = None


@dataclass
class Scenario:
    """What one simulated run does."""

    nodes: int = 3
    slots: int = 2
    jobs: int = 2
    faults: Faults = field(default_factory=Faults)
    deadline: float = 900.0
    #: scripted interventions: (time, name of a World method, args)
    script: list[tuple[float, str, tuple[Any, ...]]] = field(default_factory=list)
    settings: CoreSettings = field(default_factory=lambda: CoreSettings(
        node_timeout=3.0, speculative_after=2.0, recovery_grace=1.0, stop_timeout=8.0, late_write_grace=5.0))
    two_steps: bool = True
    #: one-shot faults, each armed this many times: "commit_fail" (a commit write fails before taking
    #: effect), "commit_crash" (a commit write takes effect, then the coordinator dies before it hears so),
    #: "drop_assignment" (a reply carrying assignments is lost), "kill_on_commit" (the user kills a job
    #: while its commit write is in flight), "publish_crash" (the commit write of a part file takes effect,
    #: then the coordinator dies before publishing it), "lose_before_publish" (a part's output is lost
    #: between its attempt's success and its commit)
    once: dict[str, int] = field(default_factory=dict)
    #: probability that a job is killed by the user at a random time
    kill_share: float = 0.0


class Store:
    """The replicated store as the control plane sees it: keys to values, with faults."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def intermediate_keys(self) -> list[str]:
        return sorted(k for k in self.data if k.startswith(("out/", "commit/", "whole/")))


class World:
    def __init__(self, seed: int, scenario: Scenario | None = None) -> None:
        self.seed = seed
        self.sc = sc = scenario or Scenario()
        self.rng = random.Random(seed)
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self.trace: list[str] = []
        self.store = Store()
        self.files: dict[str, list[str]] = {}
        self.jobs = [self._make_job(i) for i in range(sc.jobs)]
        self.durable = Durable()
        self.coord = SimCoordinator(self)
        self.nodes = {f"n{i + 1}": SimNode(self, f"n{i + 1}") for i in range(sc.nodes)}
        #: task -> attempts assigned while a valid commit record of the task was in the store
        self.reruns: list[str] = []
        self.finalized: Counter[str] = Counter()
        #: (coordinator generation, job) -> attempts that incarnation started
        self.started: dict[tuple[int, str], set[str]] = {}
        #: final statuses that leave out an attempt their coordinator started, or list one twice
        self.unlisted: list[str] = []
        self.lost_outputs: set[str] = set()  # tasks whose committed output was destroyed
        #: store calls that took effect after their failure was reported (what the coordinator could not know)
        self.landed_late: set[str] = set()
        self.user_failures: Counter[str] = Counter()
        #: part key -> the attempt whose records it holds
        self.part_writer: dict[str, str] = {}
        #: job -> its parts' writers when it was finalized (a part must not change after that)
        self.parts_at_end: dict[str, dict[str, str]] = {}

    # --- the event loop ------------------------------------------------------------------------------

    def once(self, name: str) -> bool:
        """Whether the one-shot fault ``name`` fires now (it is used up)."""
        left = self.sc.once.get(name, 0)
        if left <= 0:
            return False
        self.sc.once[name] = left - 1
        self.log(f"FAULT {name}")
        return True

    def at(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (self.now + max(0.0, delay), next(self._order), action))

    def log(self, text: str) -> None:
        self.trace.append(f"{self.now:9.3f} {text}")

    def run(self) -> World:
        for job in self.jobs:
            self.at(job.submit_at, lambda j=job: self.coord.submit(j))
            if job.kill_at is not None:
                self.at(job.kill_at, lambda j=job: self.coord.kill(j.name))
        for when, method, args in self.sc.script:
            self.at(when, lambda m=method, a=args: getattr(self, m)(*a))
        self.coord.boot()
        for node in self.nodes.values():
            node.boot()
        self.at(1.0, self._faults)
        quiet_since: float | None = None
        while self._queue:
            when, _, action = heapq.heappop(self._queue)
            if when > self.sc.deadline:
                break
            self.now = when
            action()
            if not self._quiet():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = self.now
            elif self.now - quiet_since > 5.0:  # quiet for a while: no effect still in flight changed that
                break
        return self

    def _quiet(self) -> bool:
        return (all(j.name in self.coord.finished_names() for j in self.jobs)
                and all(n.idle() for n in self.nodes.values()) and not self.store.intermediate_keys()
                and not self.leftovers())

    def leftovers(self) -> list[str]:
        """What is still held for jobs that have all ended and been swept (none when nothing leaks): the
        coordinator's per-job and per-attempt records, the scheduler's, the attempts kept on disk, and the
        kills the nodes still mean to carry out."""
        core = self.coord.core
        if core is None:
            return []
        sched = core.scheduler
        held: dict[str, Any] = {
            "jobs": core.jobs, "unconfirmed": core.unconfirmed, "stragglers": core.stragglers,
            "garbage": core.garbage, "sweeps": core.sweeps, "kills": {n: k for n, k in core.kills.items() if k},
            "tasks": sched.tasks, "attempt index": sched._attempts, "running index": sched._running_at,
            "pending index": sched._pending, "speeds": sched._speeds, "tasks per job": sched._job_tasks,
            "backups": sched._backups, "node failures": sched._node_failures,
            "stored attempts": self.durable.attempts,
            "kills on nodes": [a for n in self.nodes.values() if n.up for a in n.state.killing]}
        return [f"{name}: {sorted(map(str, items))[:4]}" for name, items in held.items() if items]

    def _faults(self) -> None:
        f = self.sc.faults
        if all(j.name in self.coord.finished_names() for j in self.jobs):
            self._heal()
            return
        for node in self.nodes.values():
            if node.up and not node.paused and self.rng.random() < f.node_crash:
                self.crash_node(node.name, self.rng.uniform(0.1, 8.0))
            elif node.up and not node.paused and self.rng.random() < f.node_pause:
                self.pause_node(node.name, self.rng.uniform(0.5, 12.0))
        if self.coord.core is not None and self.rng.random() < f.coord_crash:
            self.crash_coordinator(self.rng.uniform(0.1, 3.0))
        if self.rng.random() < f.output_loss:
            # a committed map's partitions, or any whole output (a step's, or a part not yet published)
            committed = sorted(k for k in self.store.data if (k.startswith("commit/") and "-m" in k)
                               or k.startswith("whole/"))
            if committed:
                self.lose_output(self.rng.choice(committed))
        self.at(1.0, self._faults)

    def _heal(self) -> None:
        """Every job has ended: bring every node back so stragglers report and are cleaned up."""
        for node in self.nodes.values():
            if not node.up:
                node.boot()
            node.paused = False

    # --- interventions (also used by scripts) --------------------------------------------------------

    def crash_node(self, name: str, down_for: float) -> None:
        self.log(f"CRASH node {name} for {down_for:.2f}s")
        self.nodes[name].crash()
        self.at(down_for, self.nodes[name].boot)

    def pause_node(self, name: str, pause_for: float) -> None:
        self.log(f"PAUSE node {name} for {pause_for:.2f}s")
        node = self.nodes[name]
        node.paused = True
        self.at(pause_for, node.resume)

    def crash_coordinator(self, down_for: float) -> None:
        self.log(f"CRASH coordinator for {down_for:.2f}s")
        self.coord.crash()
        self.at(down_for, self.coord.boot)

    def lose_output(self, commit_key: str) -> None:
        if commit_key.startswith("whole/"):
            attempt = commit_key.split("/", 2)[2]
            del self.store.data[commit_key]
            self.lost_outputs.add(task_of(attempt))
            self.log(f"LOSE whole output of {attempt}")
            return
        record = self.store.data.get(commit_key)
        if not isinstance(record, im.Commit):
            return
        job = commit_key.split("/")[1]
        gone = [k for k in self.store.data if k.startswith(f"out/{job}/{record.attempt}/")]
        for key in gone:
            del self.store.data[key]
        self.lost_outputs.add(record.task_id)
        self.log(f"LOSE output of {record.attempt} ({len(gone)} partitions)")

    # --- the network ---------------------------------------------------------------------------------

    def send(self, deliver: Callable[[], None], what: str) -> None:
        f = self.sc.faults
        if self.rng.random() < f.drop:
            self.log(f"drop {what}")
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            delay = self.rng.uniform(0.2, 2.0) if self.rng.random() < f.slow else self.rng.uniform(0.001, 0.02)
            self.at(delay, deliver)

    # --- jobs ----------------------------------------------------------------------------------------

    def _make_job(self, index: int) -> SimJob:
        rng = self.rng
        inputs = []
        reference: Counter[str] = Counter()
        for f in range(rng.randint(1, 3)):
            path = f"/in/j{index}/f{f}"
            lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
                     for _ in range(rng.randint(5, 40))]
            self.files[path] = lines
            for line in lines:
                reference.update(line.split())
            inputs.append((path, sum(len(line) + 1 for line in lines)))
        steps = [StepPlan(map_only=False, reducers=rng.randint(1, 3))]
        if self.sc.two_steps and rng.random() < 0.5:
            steps.append(StepPlan(map_only=False, reducers=rng.randint(1, 2)))
        plan = JobPlan(source=f"/_jobs/j{index}/job.py", source_name="job.py", inputs=tuple(inputs),
                       output=f"/out/j{index}", steps=tuple(steps), split_size=rng.choice([40, 80, 200]))
        kill_at = rng.uniform(0.5, 20.0) if rng.random() < self.sc.kill_share else None
        return SimJob(f"j{index}", plan, reference, submit_at=rng.uniform(0.0, 3.0), kill_at=kill_at)

    def output_of(self, job: SimJob) -> Counter[str]:
        total: Counter[str] = Counter()
        prefix = f"part/{job.name}/"
        for key, value in self.store.data.items():
            if key.startswith(prefix):
                total.update(value)
        return total

    # --- invariants ----------------------------------------------------------------------------------

    def check(self) -> None:
        """Assert every invariant; a violation shows the seed and the end of the trace."""
        problems = []
        finished = self.coord.finished_names()
        for job in self.jobs:
            if job.name not in finished:
                problems.append(f"job {job.name} did not end within {self.sc.deadline:g}s")
                continue
            final = self.durable.jobs[job.name]["final"]
            state = final.state
            core = self.coord.core
            if core is not None and core.state_of(job.name) != state:  # its status kept whole, or its summary
                problems.append(f"job {job.name} is {core.state_of(job.name)} to the coordinator, {state} on disk")
            if job.kill_at is not None:
                if state not in ("killed", "succeeded"):
                    problems.append(f"job {job.name} ended {state}, expected killed")
                continue
            if state != "succeeded":
                problems.append(f"job {job.name} ended {state}: {final.error}")
                continue
            if self.output_of(job) != job.reference:
                problems.append(f"job {job.name}: output differs from the reference")
            counters = {(g, n): v for g, n, v in final.counters}
            if counters.get(("sim", "words"), 0) != sum(job.reference.values()):
                problems.append(f"job {job.name}: counted {counters.get(('sim', 'words'), 0)} words, "
                                f"not {sum(job.reference.values())} (a report counted twice or lost?)")
            if f"success/{job.name}" not in self.store.data:
                problems.append(f"job {job.name}: no _SUCCESS")
        for job, count in self.finalized.items():
            if count != 1:
                problems.append(f"job {job} finalized {count} times")
        problems += [f"task re-run after it committed: {r}" for r in self.reruns]
        for job, parts in self.parts_at_end.items():
            now = {k: a for k, a in self.part_writer.items() if k.startswith(f"part/{job}/")}
            if now != parts:
                changed = sorted(k for k in now if now[k] != parts.get(k))
                problems.append(f"job {job}: part files written after the job ended: {changed[:3]}")
        problems += self.unlisted
        left = self.store.intermediate_keys()
        if left and all(j.name in finished for j in self.jobs):
            problems.append(f"intermediate keys left: {left[:5]} ({len(left)})")
        if all(j.name in finished for j in self.jobs):
            problems += [f"held after every job ended: {what}" for what in self.leftovers()]
        if problems:
            tail = "\n".join(self.trace[-60:])
            raise Violation(f"seed {self.seed}: " + "; ".join(problems) + f"\n--- last trace lines ---\n{tail}")


class Durable:
    """What the coordinator's SQLite file keeps across its crashes."""

    def __init__(self) -> None:
        self.incarnation = 0
        self.jobs: dict[str, dict[str, Any]] = {}
        self.attempts: dict[str, dict[str, Any]] = {}

    def apply(self, ins: p.Instruction) -> None:
        if isinstance(ins, p.PersistJob):
            self.jobs[ins.name] = {"plan": ins.plan, "state": "created", "started": 0.0, "ended": 0.0,
                                   "error": None, "final": None}
        elif isinstance(ins, p.PersistStarted):
            self.jobs[ins.name].update(state="running", started=ins.started)
        elif isinstance(ins, p.PersistEnded):
            self.jobs[ins.name].update(state=ins.state, ended=ins.ended, error=ins.error)
        elif isinstance(ins, p.PersistFinalized):
            self.jobs[ins.name].update(state=ins.state, ended=ins.ended, final=ins.status)
        elif isinstance(ins, p.PersistSwept):
            for attempt in [a for a, row in self.attempts.items() if row["job"] == ins.name]:
                del self.attempts[attempt]
        elif isinstance(ins, p.PersistAttempt):
            self.attempts.setdefault(ins.attempt, {"job": ins.job, "node": ins.node, "started": ins.started,
                                                   "ended": None, "ok": None, "error": ""})
        elif isinstance(ins, p.PersistAttemptEnded) and ins.attempt in self.attempts:
            self.attempts[ins.attempt].update(ended=ins.ended, ok=ins.ok, error=ins.error)

    def views(self) -> list[p.StoredJobView]:
        out = []
        for name, row in self.jobs.items():
            attempts = tuple((a, r["node"], r["started"], r["ended"], r["ok"], r["error"])
                             for a, r in self.attempts.items() if r["job"] == name)
            out.append(p.StoredJobView(name, row["plan"], row["state"], row["started"], row["ended"], row["error"],
                                       row["final"], attempts))
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
            todo = core.restore_job(stored, None, w.now)
            looked: dict[str, im.Commit | None] = {}
            instructions: list[p.Instruction] = []
            while todo:
                found = {t: self._read_commit(stored.name, t) for t in todo}
                looked.update(found)
                todo, instructions = core.replayed(stored.name, found, stored, w.now)
            self.core = core
            self._carry_out(instructions)
        self.core = core
        self._carry_out(core.resume_sweeps(w.now))
        for job in self.pending_submits:
            self.submit(job)
        self.pending_submits = []
        self._tick(self.generation)

    def crash(self) -> None:
        self.core = None
        self.generation += 1
        self.parked.clear()  # kept polls die with the process: their workers time out and poll again

    def _tick(self, generation: int) -> None:
        if generation != self.generation or self.core is None:
            return
        self._carry_out(self.core.handle(p.Tick(), self.w.now))
        self.w.at(0.25, lambda: self._tick(generation))

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
            self.w.at(core.hold_for(msg.hold), lambda: self._release(msg, generation))
            return
        self._answer(msg, held=False)

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
                    prefix = f"part/{ins.name}/"
                    self.w.parts_at_end[ins.name] = {k: a for k, a in self.w.part_writer.items()
                                                     if k.startswith(prefix)}
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
                    f"commit {record.attempt}" not in w.landed_late:
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
        part = f"part/{ins.job}/{ins.publish.rsplit('-', 1)[1]}"
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
        w.at(lands, lambda: result.append(apply()))
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
                    data[f"success/{ins.job}"] = True
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


class SimNode:
    """A node's worker, simulated: the real WorkerState, polls over the simulated network, task attempts."""

    def __init__(self, world: World, name: str) -> None:
        self.w = world
        self.name = name
        self.up = False
        self.paused = False
        self.generation = 0
        self.state = WorkerState(name, "", world.sc.slots)
        self.attempts: dict[str, int] = {}  # attempt -> generation of the run that will end it
        self._poll_sent = 0.0

    def idle(self) -> bool:
        return self.up and not self.paused and not self.state.running and not self.state.reports

    def boot(self) -> None:
        if self.up:
            return
        self.up = True
        self.paused = False
        self.generation += 1
        incarnation = f"{self.name}-{self.generation}-{self.w.rng.randrange(1 << 30):x}"
        self.state = WorkerState(self.name, incarnation, self.w.sc.slots)
        self.attempts = {}
        self.w.log(f"BOOT node {self.name} ({incarnation})")
        self._loop(self.generation)

    def crash(self) -> None:
        self.up = False
        self.generation += 1  # its attempts die with it (task processes die with their node)
        for attempt in self.attempts:
            self._partial(attempt)
        self.attempts = {}

    def _partial(self, attempt: str) -> None:
        """A map attempt killed while writing its output leaves some partitions behind: a store node that had
        its request still lands the write, up to a few seconds later on a loaded machine."""
        if "-m" in attempt and self.w.rng.random() < 0.5:
            def land() -> None:
                self.w.store.data[f"out/{attempt.split('/', 1)[0]}/{attempt}/0"] = Counter({"partial": 1})
                self.w.log(f"PARTIAL output of {attempt} lands")

            self.w.at(self.w.rng.uniform(0.0, 3.0), land)

    def resume(self) -> None:
        if self.up and self.paused:
            self.w.log(f"RESUME node {self.name}")
            self.paused = False

    def _loop(self, generation: int) -> None:
        if generation != self.generation:
            return
        w = self.w
        if not self.paused and (self.state.in_flight is None or w.now - self._poll_sent > 2.0):
            if self.state.in_flight is not None:
                self.state.poll_failed()  # no answer in time
            self._send_poll()
        w.at(self.state.next_poll(0.5 if not self.state.reports else 0.1), lambda: self._loop(generation))

    def _send_poll(self) -> None:
        w = self.w
        msg = self.state.poll(hold=0.5)
        self._poll_sent = w.now
        w.send(lambda: w.coord.receive_poll(msg), f"poll {msg.seq} from {self.name}")

    def receive_reply(self, ins: p.ReplyToWorker, again: bool = False) -> None:
        if not self.up or self.paused:
            return
        for action in self.state.replied(ins.seq, ins.assignments, ins.kills, ins.acked, ins.soon, again):
            if isinstance(action, Start):
                self._start(action.attempt, action.spec)
            elif isinstance(action, Kill) and action.attempt in self.attempts:
                self.w.log(f"KILLED {action.attempt} on {self.name}")
                del self.attempts[action.attempt]
                self._partial(action.attempt)
                self.state.ended(AttemptReport(attempt=action.attempt, ok=False, error="killed", cause="killed"))
        if self.state.in_flight is None and self.state.next_poll(0.5) == 0.0:
            self._send_poll()  # "again" and nothing started: the next goes at once, as the worker's loop sends it

    # --- attempts --------------------------------------------------------------------------------

    def _start(self, attempt: str, spec: TaskSpec) -> None:
        w = self.w
        duration = w.rng.uniform(0.2, 3.0)
        if w.rng.random() < w.sc.faults.straggler:
            duration *= 10
        self.attempts[attempt] = self.generation
        w.log(f"START {attempt} on {self.name} ({duration:.2f}s)")
        runner = Runner(w, spec)
        runner.read()  # an attempt reads its input as it starts and writes its output as it ends
        w.at(duration, lambda: self._finish(attempt, runner, self.generation))

    def _finish(self, attempt: str, runner: Runner, generation: int) -> None:
        if generation != self.generation or attempt not in self.attempts:
            return  # the node crashed, or the attempt was killed
        if self.paused and zlib.crc32(attempt.encode()) % 2:
            # half the attempts are stopped with their paused node (SIGSTOP on its process group): they write
            # when it resumes, maybe long after their job was cleaned up; the others run on, cut off from it
            self.w.at(0.1, lambda: self._finish(attempt, runner, generation))
            return
        del self.attempts[attempt]
        report = runner.run()
        self.w.log(f"END {attempt} on {self.name}: {'ok' if report.ok else report.cause or 'error'} "
                   f"{report.error}")
        self.state.ended(report)


class Runner:
    """One attempt's work, as the child process would do it, against the simulated store."""

    def __init__(self, world: World, spec: TaskSpec) -> None:
        self.w = world
        self.spec = spec
        self.job = spec.job
        self.attempt = spec.attempt
        self.input: Counter[str] | LostInput | None = None

    def read(self) -> None:
        try:
            self.input = self._read()
        except LostInput as lost:
            self.input = lost

    def run(self) -> AttemptReport:
        w, f = self.w, self.w.sc.faults
        task = task_of(self.attempt)
        if w.user_failures[task] < 2 and w.rng.random() < f.user_fail:
            w.user_failures[task] += 1
            return AttemptReport(attempt=self.attempt, ok=False, error="ValueError: bad record", traceback="tb")
        if w.rng.random() < f.task_store_fail:
            return AttemptReport(attempt=self.attempt, ok=False, cause="store",
                                 error="QuorumError: only 1 of 2 replicas answered")
        counts = self.input
        if isinstance(counts, LostInput):
            lost = counts
            return AttemptReport(attempt=self.attempt, ok=False, cause="input_lost", lost_task=lost.task,
                                 lost_attempt=lost.attempt, error=f"InputLostError: {lost.task}")
        assert counts is not None
        if self.spec.kind == "map":
            return self._write_map(counts)
        target = self.spec.output
        assert target is not None and target.kind in ("store", "object") and target.key
        w.store.data[f"whole/{self.job}/{self.attempt}"] = counts  # published, or read, once committed
        return AttemptReport(attempt=self.attempt, ok=True)

    def _read(self) -> Counter[str]:
        data = self.w.store.data
        spec = self.spec
        if spec.kind == "reduce":
            total: Counter[str] = Counter()
            for c in spec.commits:
                if spec.partition not in c.partitions:
                    continue
                part = data.get(f"out/{self.job}/{c.attempt}/{spec.partition}")
                if part is None:
                    raise LostInput(c.task_id, c.attempt)
                total.update(part)
            return total
        source = spec.input
        assert source is not None
        if source.kind == "split":
            split = source.split
            assert split is not None
            counts: Counter[str] = Counter()
            offset = 0
            for line in self.w.files[split.path]:
                if split.start <= offset < split.end:
                    counts.update(line.split())
                offset += len(line) + 1
            return counts
        assert spec.producer is not None and source.key.endswith(spec.producer.attempt)
        value = data.get(f"whole/{self.job}/{spec.producer.attempt}")
        if value is None:
            raise LostInput(spec.producer.task_id, spec.producer.attempt)
        return Counter(value)

    def _write_map(self, counts: Counter[str]) -> AttemptReport:
        parts: dict[int, Counter[str]] = {}
        for word, n in counts.items():
            parts.setdefault(zlib.crc32(word.encode()) % self.spec.num_partitions, Counter())[word] += n
        for part, value in parts.items():
            self.w.store.data[f"out/{self.job}/{self.attempt}/{part}"] = value
        words = sum(counts.values()) if self.spec.step == 0 else 0
        return AttemptReport(attempt=self.attempt, ok=True, partitions=tuple(sorted(parts)),
                             counters=(("sim", "words", words),))


class LostInput(Exception):
    def __init__(self, task: str, attempt: str) -> None:
        super().__init__(task)
        self.task = task
        self.attempt = attempt
