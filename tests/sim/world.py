"""A deterministic simulation of the MapReduce control plane: the real state machines in a seeded world.

The coordinator's core (:class:`~dynamr.mapreduce.control.CoordinatorCore`) and each node's
:class:`~dynamr.mapreduce.workerstate.WorkerState` run unchanged; around them this module simulates what
the asyncio shells do, on a virtual clock: a network that delays, drops, duplicates and reorders messages;
a store whose calls fail or time out (sometimes after taking effect); task attempts that take random time,
fail in user code or on store errors, and find inputs lost; nodes crashed, paused and restarted with new
incarnations; the coordinator crashed and restarted from its durable state (what SQLite keeps); users
killing jobs, and deleting ended ones to submit another job under the same name.

Everything random comes from one ``random.Random(seed)``, and events run in (time, sequence) order, so a seed
replays exactly; every step is appended to a trace. After a run, :meth:`World.check` asserts the invariants:
every job ends, succeeded, within the deadline; its output equals the sequential reference; no task runs
again once committed unless its output was lost; each job is finalized once; no intermediate key remains;
each final status lists every attempt its coordinator started, once; and once every job has ended and been
swept, neither the coordinator, its scheduler, its durable state nor a node holds anything for them; and
no part file changes once its job was finalized. The coordinator's shell is simulated in
:mod:`tests.sim.shell`, nodes and attempts in :mod:`tests.sim.nodes`.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.corestate import CoreSettings
from dynamr.mapreduce.jobrun import JobPlan, StepPlan, task_of
from tests.sim.nodes import SimNode
from tests.sim.shell import Durable, SimCoordinator

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
    very_late: float = 0.0  # a partial output lands 1-6x late_write_grace after its attempt died


@dataclass
class SimJob:
    name: str
    plan: JobPlan
    reference: Counter[str]
    submit_at: float = 0.0
    kill_at: float | None = None
    #: seconds after it ended that the user deletes it and submits another job of the same name
    reuse_after: float | None = None
    #: deleted, its name reused (checked when it was deleted)
    retired: bool = False


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
    #: probability that a job, once ended, is deleted and another (other inputs and output) is submitted under
    #: its name, while attempts of the first may still be running or writing
    reuse_share: float = 0.0
    #: share of jobs whose input files all share one map task (small files packed together)
    combined_share: float = 0.0
    #: seconds between the coordinator's janitor rounds (0: none): each deletes the intermediate keys no job
    #: needs. Deleting one the core had no pending delete of is a violation in a run whose coordinator never
    #: crashed (a sweep missed it)
    janitor: float = 0.0


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
        #: output path -> its parts' writers when its job was finalized (a part must not change after that)
        self.parts_at_end: dict[str, dict[str, str]] = {}
        #: attempts of deleted jobs (a record naming one is not a commit of the job now bearing the name)
        self.retired_attempts: set[str] = set()
        #: what was wrong with a job when it was deleted
        self.problems: list[str] = []
        #: keys the janitor deleted that the core had no pending delete of; times the coordinator crashed
        self.janitor_rescued: list[str] = []
        self.coord_crashes = 0
        #: the janitor's own draws, and those of very late writes (the scenario's stream stays as without them)
        self.janitor_rng = random.Random(seed + 1)
        self.late_rng = random.Random(seed + 2)
        #: keys written very late (after every sweep of their job could have waited for them)
        self.very_late: set[str] = set()

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
                self.at(job.kill_at, lambda j=job: self._kill(j))
            if job.reuse_after is not None:
                self.at(job.submit_at + 1.0, lambda j=job: self._reuse(j))
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

    def active(self) -> list[SimJob]:
        """The jobs not deleted."""
        return [j for j in self.jobs if not j.retired]

    def all_ended(self) -> bool:
        """Every job not deleted has ended, and none is still to be deleted and its name reused."""
        finished = self.coord.finished_names()
        return all(j.name in finished and j.reuse_after is None for j in self.active())

    def _quiet(self) -> bool:
        return (self.all_ended() and all(n.idle() for n in self.nodes.values())
                and not self.store.intermediate_keys() and not self.leftovers())

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
        if self.all_ended():
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
        self.coord_crashes += 1
        self.coord.crash()
        self.at(down_for, self.coord.boot)

    def _kill(self, job: SimJob) -> None:
        """The user kills ``job`` (not once it was deleted: its name may be another job's by then)."""
        if job.retired:
            return
        if self.coord.core is None:
            self.at(0.5, lambda: self._kill(job))
            return
        self.coord.kill(job.name)

    def _reuse(self, job: SimJob) -> None:
        """Once ``job`` has ended (and ``reuse_after`` seconds more), the user deletes it and submits another
        job under its name; tried again later while the coordinator is down or refuses (not yet cleaned up)."""
        if job.name not in self.coord.finished_names() or self.coord.core is None:
            self.at(1.0, lambda: self._reuse(job))
            return
        if job.reuse_after is not None and job.reuse_after > 0:
            delay, job.reuse_after = job.reuse_after, 0.0
            self.at(delay, lambda: self._reuse(job))
            return
        problems = self._job_problems(job)
        if not self.coord.delete(job.name):
            self.at(1.0, lambda: self._reuse(job))
            return
        self.problems += [f"(deleted) {problem}" for problem in problems]
        job.retired, job.reuse_after = True, None
        for key in [k for k in self.started if k[1] == job.name]:
            self.retired_attempts |= self.started.pop(key)
        successor = self._make_job(int(job.name[1:]), again=True)
        self.jobs.append(successor)
        self.log(f"REUSE the name {job.name}: a new job reads {[i for i, _ in successor.plan.inputs]}")
        self.coord.submit(successor)
        if successor.kill_at is not None:
            self.at(successor.kill_at - self.now, lambda: self._kill(successor))

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

    def _make_job(self, index: int, again: bool = False) -> SimJob:
        """Job ``j<index>`` (``again``: the second job of that name, with other inputs and output)."""
        rng = self.rng
        inputs = []
        reference: Counter[str] = Counter()
        folder = f"j{index}{'-again' if again else ''}"
        for f in range(rng.randint(1, 3)):
            path = f"/in/{folder}/f{f}"
            lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
                     for _ in range(rng.randint(5, 40))]
            self.files[path] = lines
            for line in lines:
                reference.update(line.split())
            inputs.append((path, sum(len(line) + 1 for line in lines)))
        steps = [StepPlan(map_only=False, reducers=rng.randint(1, 3))]
        if self.sc.two_steps and rng.random() < 0.5:
            steps.append(StepPlan(map_only=False, reducers=rng.randint(1, 2)))
        split_size = rng.choice([40, 80, 200])
        if self.sc.combined_share and rng.random() < self.sc.combined_share:  # (no draw otherwise: seeds keep)
            split_size = 1 << 20  # the job's files share one map task
        plan = JobPlan(source=f"/_jobs/j{index}/job.py", source_name="job.py", inputs=tuple(inputs),
                       output=f"/out/{folder}", steps=tuple(steps), split_size=split_size)
        kill_at = rng.uniform(0.5, 20.0) if rng.random() < self.sc.kill_share else None
        job = SimJob(f"j{index}", plan, reference, submit_at=rng.uniform(0.0, 3.0), kill_at=kill_at)
        if again:
            job.submit_at = self.now
            if kill_at is not None:
                job.kill_at = self.now + kill_at
        elif self.sc.reuse_share and rng.random() < self.sc.reuse_share:  # (no draw without reuse: seeds keep)
            job.reuse_after = rng.choice([0.0, rng.uniform(0.0, 8.0)])
        return job

    def output_of(self, job: SimJob) -> Counter[str]:
        total: Counter[str] = Counter()
        prefix = f"part:{job.plan.output}/"
        for key, value in self.store.data.items():
            if key.startswith(prefix):
                total.update(value)
        return total

    # --- invariants ----------------------------------------------------------------------------------

    def _job_problems(self, job: SimJob) -> list[str]:
        """What is wrong with an ended job: its state, output, counters and _SUCCESS."""
        final = self.durable.jobs[job.name]["final"]
        state = final.state
        core = self.coord.core
        problems = []
        if core is not None and core.state_of(job.name) != state:  # its status kept whole, or its summary
            problems.append(f"job {job.name} is {core.state_of(job.name)} to the coordinator, {state} on disk")
        if job.kill_at is not None:
            if state not in ("killed", "succeeded"):
                problems.append(f"job {job.name} ended {state}, expected killed")
            return problems
        if state != "succeeded":
            return [*problems, f"job {job.name} ended {state}: {final.error}"]
        if self.output_of(job) != job.reference:
            problems.append(f"job {job.name}: output differs from the reference")
        counters = {(g, n): v for g, n, v in final.counters}
        if counters.get(("sim", "words"), 0) != sum(job.reference.values()):
            problems.append(f"job {job.name}: counted {counters.get(('sim', 'words'), 0)} words, "
                            f"not {sum(job.reference.values())} (a report counted twice or lost?)")
        if f"success:{job.plan.output}" not in self.store.data:
            problems.append(f"job {job.name}: no _SUCCESS")
        return problems

    def check(self) -> None:
        """Assert every invariant; a violation shows the seed and the end of the trace."""
        problems = list(self.problems)
        finished = self.coord.finished_names()
        for job in self.active():
            if job.name not in finished:
                problems.append(f"job {job.name} did not end within {self.sc.deadline:g}s")
            else:
                problems += self._job_problems(job)
        for name, count in self.finalized.items():
            if count != sum(j.name == name for j in self.jobs):
                problems.append(f"job {name} finalized {count} times")
        problems += [f"task re-run after it committed: {r}" for r in self.reruns]
        for output, parts in self.parts_at_end.items():
            now = {k: a for k, a in self.part_writer.items() if k.startswith(f"part:{output}/")}
            if now != parts:
                changed = sorted(k for k in now if now[k] != parts.get(k))
                problems.append(f"{output}: part files written after its job ended: {changed[:3]}")
        problems += self.unlisted
        if self.janitor_rescued and not self.coord_crashes:
            problems.append(f"the janitor deleted {self.janitor_rescued[:3]}, which no sweep would have, though the "
                            "coordinator never crashed")
        left = self.store.intermediate_keys()
        if left and self.all_ended():
            problems.append(f"intermediate keys left: {left[:5]} ({len(left)})")
        if self.all_ended():
            problems += [f"held after every job ended: {what}" for what in self.leftovers()]
        if problems:
            tail = "\n".join(self.trace[-60:])
            raise Violation(f"seed {self.seed}: " + "; ".join(problems) + f"\n--- last trace lines ---\n{tail}")
