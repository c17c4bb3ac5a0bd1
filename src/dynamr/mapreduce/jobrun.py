"""One job's progress through its steps, as a pure state machine over the shared :class:`Scheduler`.

The client turns a job file into a :class:`JobPlan` (steps, reducers, input files and sizes, sampled
partition state): the coordinator never runs user code. :class:`JobRun` cuts step 0's inputs into splits
and adds one map task per split; when every map of a step has a commit record it adds the step's reduce
tasks; when those are committed, the next step's maps read the reduce outputs; after the last step the job
has succeeded. Each assignment becomes a task spec (a typed record) for :mod:`dynamr.mapreduce.child`.

Task ids are ``s<step>-m<index>`` and ``s<step>-r<partition>``. Output of a non-final step, and map output,
are objects in the store; the last step writes ``part-NNNNN`` files into the output (a local directory in
embedded mode, a directory on the store otherwise).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.compressed import suffix_of, work_of
from dynamr.mapreduce.scheduler import Assignment, IllegalTransition, Scheduler, TaskState
from dynamr.mapreduce.splits import WHOLE_FILE_FORMATS, Split, combine_splits, combine_ways, plan_splits
from dynamr.mapreduce.tasks import BUILTIN
from dynamr.rpc import messages as m
from dynamr.rpc.messages import AttemptReport, JobPlan, StepPlan

__all__ = ["JobPlan", "JobRun", "StepPlan", "job_of", "task_of"]

#: every legal move of a job's state, in one place
JOB_TRANSITIONS: frozenset[tuple[str, str]] = frozenset({
    ("created", "running"), ("created", "killed"),
    ("running", "succeeded"), ("running", "failed"), ("running", "killed"),
})
ENDED = frozenset({"succeeded", "failed", "killed"})
#: a task may fail this many times per counted attempt because the store was unavailable
STORE_RETRIES_PER_ATTEMPT = 5
#: seconds a task waits before it runs again after the store was unavailable to it, doubled at each such
#: failure up to the second figure: an outage of about a minute is waited out, not retried 20 times in a
#: second (a task process forked from the zygote fails against a dead node within milliseconds)
STORE_RETRY_DELAY, STORE_RETRY_DELAY_MAX = 0.25, 4.0


def store_retry_delay(failures: int) -> float:
    """How long a task waits after its ``failures``-th attempt that found the store unavailable."""
    return min(STORE_RETRY_DELAY_MAX, STORE_RETRY_DELAY * 2.0 ** min(max(failures - 1, 0), 16))


def summary_of(status: m.JobStatusView) -> m.JobSummary:
    return m.JobSummary(name=status.name, state=status.state, maps=status.maps, maps_done=status.maps_done,
                        reduces=status.reduces, reduces_done=status.reduces_done, seconds=status.seconds,
                        output=status.output)


def shuffle_bytes(status: m.JobStatusView) -> int:
    """Bytes of map output a job wrote for its reduces so far (its built-in counter)."""
    return sum(value for group, name, value in status.counters if group == BUILTIN and name == "shuffle bytes")


@dataclass
class TaskInfo:
    kind: str  # "map" or "reduce"
    step: int
    index: int
    input: m.TaskInput | None = None
    output: m.TaskOutput | None = None
    num_partitions: int = 1

    def splits(self) -> tuple[m.SplitRef, ...]:
        """The input byte ranges of a map of step 0 (one, or several small files)."""
        return () if self.input is None else self.input.splits

    def split(self) -> m.SplitRef | None:
        """The input byte range of a map of step 0 that reads one (what a failure report shows)."""
        splits = self.splits()
        return splits[0] if len(splits) == 1 else None


def splits_of(plan: JobPlan) -> list[Split]:
    """The splits of a job's input files (before small files are packed into shared tasks)."""
    return plan_splits(plan.inputs, plan.split_size, whole_files=plan.input_format in WHOLE_FILE_FORMATS,
                       whole=frozenset(plan.whole_inputs))


def _work(splits: tuple[Split, ...] | tuple[m.SplitRef, ...]) -> int:
    return sum(work_of(s.path, s.end - s.start) for s in splits)


def job_of(task_or_attempt: str) -> str:
    """The job a task or attempt id belongs to (ids are ``<job>/s<step>-<m|r><n>[#<attempt>]``; job names
    hold no "/")."""
    return task_or_attempt.split("/", 1)[0]


def task_of(attempt: str) -> str:
    """The task an attempt id belongs to."""
    return attempt.split("#", 1)[0]


class JobRun:
    def __init__(self, name: str, plan: JobPlan, scheduler: Scheduler,
                 locate: Callable[[Split], set[str]] | None = None, *, wall_offset: float = 0.0) -> None:
        self.name = name
        #: every time here is monotonic; this is added for what users read
        self.wall_offset = wall_offset
        self.plan = plan
        self.scheduler = scheduler
        self.locate = locate
        self.state = "created"
        self.step = 0
        self.tasks: dict[str, TaskInfo] = {}
        self.commits: dict[str, im.Commit] = {}
        self.error: m.JobFailure | None = None
        #: task -> the counters of its latest commit (a task run again replaces them when it commits again;
        #: until then the output its readers used is the one counted)
        self._task_counters: dict[str, tuple[tuple[str, str, int], ...]] = {}
        #: how each attempt ended (monotonic times), in the order they ended; a later account of one attempt
        #: replaces the first
        self.history: dict[str, m.AttemptView] = {}
        self.started_at = 0.0
        self.ended_at = 0.0
        #: set by the coordinator once an ended job's output is marked and its intermediate data deleted
        self.finalized = False
        self._attempt_nodes: dict[str, str] = {}
        #: skip mode: map tasks retried with record tracking, and the records (keys as JSON) they skip
        self._tracked: set[str] = set()
        self._skips: dict[str, list[str]] = {}
        self._attempt_started: dict[str, float] = {}
        #: backup attempts started for stragglers
        self._speculative: set[str] = set()
        #: nodes that got no more of this job's tasks after repeated failures
        self.excluded_nodes: set[str] = set()
        #: committed attempts whose output was lost (attempt -> task): their commit records are void
        self.superseded: dict[str, str] = {}
        #: the tasks whose commits end the job (the last step's reduces, or its maps when it has none)
        self._last_phase: list[str] = []
        #: task -> attempts that failed because the store was unavailable, and when the first did
        self._store_failures: dict[str, int] = {}
        self._store_failing_since: dict[str, float] = {}
        #: the status kept when the job succeeded before a restart (its commit records may be gone since)
        self._kept: m.JobStatusView | None = None

    # --- ids -----------------------------------------------------------------------------------------

    def task_id(self, kind: str, step: int, index: int) -> str:
        return f"{self.name}/s{step}-{kind[0]}{index}"

    def _step_tasks(self, kind: str, step: int) -> list[str]:
        return [t for t, info in self.tasks.items() if info.kind == kind and info.step == step]

    def producers(self, task_id: str) -> list[str]:
        """The tasks whose committed output ``task_id`` reads: a reduce reads every map of its step, a map
        of a later step reads one output of the step before."""
        info = self.tasks[task_id]
        if info.kind == "reduce":
            return self._step_tasks("map", info.step)
        if info.step == 0:
            return []
        before = info.step - 1
        return [self.task_id("map" if self.plan.steps[before].map_only else "reduce", before, info.index)]

    def consumers(self, task_id: str) -> list[str]:
        return [t for t in self.tasks if task_id in self.producers(t)]

    # --- progress ------------------------------------------------------------------------------------

    @property
    def counters(self) -> dict[tuple[str, str], int]:
        """The job's counters: the sum over its tasks of their latest committed attempt's."""
        total: dict[tuple[str, str], int] = {}
        for counters in self._task_counters.values():
            for group, name, value in counters:
                total[(group, name)] = total.get((group, name), 0) + value
        return total

    def move(self, new: str) -> None:
        """Change the job's state; a move not in :data:`JOB_TRANSITIONS` is a bug."""
        if (self.state, new) not in JOB_TRANSITIONS:
            raise IllegalTransition(f"job {self.name}: {self.state} -> {new} is not a legal move")
        self.state = new

    def start(self, now: float) -> None:
        """Create every task of every step at once: step 0's maps queued, the rest waiting until their
        inputs are committed (:meth:`gate`). Knowing every task from the start lets a restarted coordinator
        find every commit record, and status show true totals."""
        self.move("running")
        self.started_at = now
        splits = splits_of(self.plan)
        groups = (combine_splits(splits, self.plan.split_size, combine_ways(self.plan.task_slots))
                  if self.plan.combine_inputs else [(s,) for s in splits])
        # largest first (the queue is FIFO within a priority): the last wave of a phase is then made of
        # small tasks, so slots finish together instead of one waiting on a big split (a compressed file
        # counted as the text it holds)
        for number, group in sorted(enumerate(groups), key=lambda g: -_work(g[1])):
            source = m.TaskInput(kind="split", local=self.plan.local_inputs, splits=tuple(
                m.SplitRef(index=s.index, path=s.path, start=s.start, end=s.end, file_size=s.file_size) for s in group))
            self._add_map(0, number, source, self._preferred(group))
        maps = len(groups)
        for step, plan in enumerate(self.plan.steps):
            if step > 0:
                for number in range(maps):
                    self._add_map(step, number, m.TaskInput(kind=self._whole_kind()), set(), runnable=False)
            if not plan.map_only:
                for partition in range(plan.reducers):
                    task_id = self.task_id("reduce", step, partition)
                    self.tasks[task_id] = TaskInfo("reduce", step, partition,
                                                   output=self._output_for(step, partition))
                    self.scheduler.add(task_id, job=self.name, phase=f"{self.name}/s{step}-r", runnable=False)
                maps = plan.reducers
        self._last_phase = [t for t, i in self.tasks.items() if i.step == len(self.plan.steps) - 1
                            and (i.kind == "reduce" or self.plan.steps[i.step].map_only)]
        self._advance(now)
        self.gate()

    def _add_map(self, step: int, index: int, source: m.TaskInput, preferred: set[str],
                 runnable: bool = True) -> None:
        task_id = self.task_id("map", step, index)
        plan = self.plan.steps[step]
        self.tasks[task_id] = TaskInfo("map", step, index, input=source,
                                       output=self._output_for(step, index) if plan.map_only else None,
                                       num_partitions=1 if plan.map_only else plan.reducers)
        self.scheduler.add(task_id, preferred, job=self.name, phase=f"{self.name}/s{step}-m",
                           weight=_work(source.splits) if source.splits else 1, runnable=runnable)

    def _preferred(self, group: tuple[Split, ...]) -> set[str]:
        """The nodes that hold the most of a map's input (the first chunk of each of its splits)."""
        if self.locate is None:
            return set()
        held: dict[str, int] = {}
        for split in group:
            for node in self.locate(split):
                held[node] = held.get(node, 0) + split.length
        most = max(held.values(), default=0)
        return {node for node, length in held.items() if length == most}

    def _output_for(self, step: int, number: int) -> m.TaskOutput:
        """Where task ``number`` of ``step`` writes, before the attempt is known (see :meth:`_whole`)."""
        if step < len(self.plan.steps) - 1:
            return m.TaskOutput(kind=self._whole_kind())
        part = f"{self.plan.output.rstrip('/')}/part-{number:05d}{suffix_of(self.plan.output_compression)}"
        return m.TaskOutput(kind="local" if self.plan.local_output else "store", path=part)

    def _whole_kind(self) -> str:
        """How a non-final step's outputs are kept: objects in the store, or files (local intermediate data).
        Where exactly depends on the attempt (:meth:`_whole`)."""
        return "file" if self.plan.local_intermediate else "object"

    def _whole(self, attempt: str) -> tuple[str, str]:
        """(key, path) of an attempt's whole output: an object in the store, or a file kept locally."""
        if self.plan.local_intermediate:
            folder = attempt.replace("/", "_")
            return "", f"{self.plan.local_intermediate}/{self.name}/{folder}/whole.run"
        return im.attempt_key(self.name, attempt), ""

    def _attempt_output(self, info: TaskInfo, attempt: str) -> m.TaskOutput | None:
        """An attempt writes a step's output, or a part file on the store, as its own object (the part is
        published at the path when its commit record names the attempt): nothing reads a loser's."""
        out = info.output
        if out is None or out.kind == "local":
            return out
        if out.kind == "store":
            return m.TaskOutput(kind="store", path=out.path, key=im.attempt_key(self.name, attempt))
        key, path = self._whole(attempt)
        return m.TaskOutput(kind=out.kind, key=key, path=path)

    def publish_path(self, task_id: str) -> str:
        """Where the committed output of ``task_id`` is published: its part file on the store ("" when the
        task writes nothing there)."""
        info = self.tasks.get(task_id)
        out = None if info is None else info.output
        return out.path if out is not None and out.kind == "store" else ""

    def spec_for(self, assignment: Assignment, now: float, *, progress_timeout: float = 0.0) -> m.TaskSpec:
        """The spec of an assigned attempt (the worker adds its node's part)."""
        info = self.tasks[assignment.task_id]
        self._attempt_nodes[assignment.attempt_id] = assignment.node
        self._attempt_started[assignment.attempt_id] = now
        if assignment.speculative:
            self._speculative.add(assignment.attempt_id)
        plan = self.plan
        commits: tuple[m.CommitRef, ...] = ()
        producer = None
        if info.kind == "reduce":
            commits = tuple(m.CommitRef(task_id=c.task_id, attempt=c.attempt, partitions=c.partitions)
                            for c in (self.commits[t] for t in sorted(self._step_tasks("map", info.step))))
        source = info.input
        if info.kind == "map" and info.step > 0:
            task = self.producers(assignment.task_id)[0]
            producer = m.CommitRef(task_id=task, attempt=self.commits[task].attempt)
            key, path = self._whole(producer.attempt)
            source = m.TaskInput(kind=self._whole_kind(), key=key, path=path)
        return m.TaskSpec(
            job=self.name, attempt=assignment.attempt_id, kind=info.kind, step=info.step, source=plan.source,
            source_name=plan.source_name, process_group=plan.process_group, job_class=plan.job_class,
            options=plan.options, partition_state=plan.partition_state,
            chunk_size=plan.chunk_size, buffer_records=plan.buffer_records,
            local_intermediate=plan.local_intermediate, input=source,
            output=self._attempt_output(info, assignment.attempt_id),
            num_partitions=info.num_partitions, partition=info.index if info.kind == "reduce" else 0,
            map_job=self.name if info.kind == "reduce" else "", commits=commits, producer=producer,
            track_records=assignment.task_id in self._tracked,
            skip_records=tuple(self._skips.get(assignment.task_id, ())), progress_timeout=progress_timeout)

    def on_success(self, report: AttemptReport, now: float) -> im.Commit | None:
        """An attempt ended well. Returns the commit record to write when it won its task, else None."""
        attempt = report.attempt
        outcome = self.scheduler.succeeded(attempt, now)
        task_id = task_of(attempt)
        self._record(task_id, attempt, True, now, "")
        if not outcome.commit:
            return None
        return im.Commit(task_id, attempt, report.partitions, report.counters)

    def on_failure(self, report: AttemptReport, now: float) -> bool:
        """An attempt failed. True when this fails the whole job (the task used up its attempts)."""
        attempt = report.attempt
        task_id = task_of(attempt)
        self._record(task_id, attempt, False, now, report.error)
        if self.plan.skip_bad_records and task_id in self.tasks and self.tasks[task_id].kind == "map":
            self._tracked.add(task_id)  # the next attempt finds the failing record...
            bad = report.bad_record
            if bad is not None and bad not in self._skips.setdefault(task_id, []):
                self._skips[task_id].append(bad)  # ...and the one after skips it
        outcome = self.scheduler.failed(attempt, report.error or "failed")
        self.excluded_nodes.update(self.scheduler.excluded_nodes(self.name))
        if outcome.task_failed and self.state == "running":
            info = self.tasks.get(task_id)
            self.move("failed")
            self.ended_at = now
            self.error = m.JobFailure(task=task_id, attempt=attempt, node=self._attempt_nodes.get(attempt, ""),
                                      error=report.error, traceback=report.traceback, output=report.output,
                                      input=report.input or (info.split() if info else None))
            return True
        return False

    def on_uncounted(self, report: AttemptReport, now: float) -> bool:
        """An attempt failed for a reason that is neither its task's nor its node's fault (the store was
        unavailable, or it was killed on request): its task runs again, nothing is counted against it or
        its node. After the store was unavailable to it, the task backs off (:func:`store_retry_delay`). A
        store that stays unavailable through ``STORE_RETRIES_PER_ATTEMPT * max_attempts`` attempts of one task
        fails the job (True), so an outage cannot retry forever."""
        task_id = task_of(report.attempt)
        self._record(task_id, report.attempt, False, now, report.error)
        store = report.cause == "store"
        failures = self._store_failures.get(task_id, 0) + 1
        ready_at = now + store_retry_delay(failures) if store else 0.0
        if not self.scheduler.attempt_lost(report.attempt, report.error or "failed", ready_at) or not store:
            return False
        self._store_failures[task_id] = failures
        since = self._store_failing_since.setdefault(task_id, now)
        if failures < STORE_RETRIES_PER_ATTEMPT * self.scheduler.max_attempts:
            return False
        self.move("failed")
        self.ended_at = now
        info = self.tasks.get(task_id)
        self.error = m.JobFailure(
            task=task_id, attempt=report.attempt, node=self._attempt_nodes.get(report.attempt, ""),
            error=f"the store was unavailable to task {task_id} in {failures} attempts over {now - since:.0f} s; "
                  f"check that enough nodes are up ('dynamr cluster status'), then run the job again. "
                  f"Last: {report.error}",
            traceback=report.traceback, output=report.output, input=report.input or (info.split() if info else None))
        return True

    def on_input_lost(self, report: AttemptReport, now: float) -> str | None:
        """An attempt could not read the committed output of an earlier task (``report.lost_task``):
        every replica of it is gone. The attempt's task waits, uncharged, and the producer runs again
        (its consumers wait for it). Returns the producer when it was reopened now (its commit record is
        void: delete it), None when it already was (or the job has ended). The job fails when that output
        was lost ``max_attempts`` times."""
        attempt = report.attempt
        task_id = task_of(attempt)
        error = report.error or "an input was lost"
        self._record(task_id, attempt, False, now, error)
        self.scheduler.input_lost(attempt, error)
        producer, producer_attempt = report.lost_task, report.lost_attempt
        record = self.commits.get(producer)
        if self.state != "running" or record is None or record.attempt != producer_attempt:
            self._release_ready()  # the producer has been run again already (or is being run)
            return None
        del self.commits[producer]
        self._lost(producer, producer_attempt, error, now)
        return producer

    def lost_unpublished(self, record: im.Commit, error: str, now: float) -> None:
        """The commit record of a task that writes a part file was written, but the attempt's output could
        not be published: every replica of it is gone. The record is void and the task runs again."""
        if self.state == "running":
            self._lost(record.task_id, record.attempt, error, now)

    def _lost(self, task_id: str, attempt: str, error: str, now: float) -> None:
        """The committed output of ``attempt`` is gone: its record is void, and its task runs again (its
        readers wait for it), or, lost too often, fails the job."""
        self.superseded[attempt] = task_id
        if self.scheduler.reopen(task_id, f"the output of attempt {attempt} was lost"):
            for consumer in self.consumers(task_id):
                self.scheduler.hold(consumer)
            return
        self.move("failed")
        self.ended_at = now
        info = self.tasks[task_id]
        self.error = m.JobFailure(
            task=task_id, attempt=attempt, node=self._attempt_nodes.get(attempt, ""),
            error=f"the committed output of task {task_id} was lost {self.scheduler.max_attempts} times (every "
                  f"replica unreadable); check the nodes' disks and logs, then run the job again. Last: {error}",
            input=info.split())

    def _release_ready(self) -> None:
        self.gate()

    def gate(self) -> None:
        """Readiness as a function of the commits: a queued task whose inputs are not all committed (one is
        being produced again) waits; a waiting task whose inputs are all committed is queued. Called before
        every assignment, so no retry path can queue a task that would read a missing input."""
        if self.state != "running":
            return
        maps_done: dict[int, bool] = {}
        for task_id, info in self.tasks.items():
            if info.kind == "map" and not maps_done.get(info.step, True):
                continue
            if info.kind == "map":
                maps_done[info.step] = task_id in self.commits
        for task_id, info in self.tasks.items():
            task = self.scheduler.tasks.get(task_id)
            if task is None or task.state not in (TaskState.PENDING, TaskState.WAITING, TaskState.RUNNING):
                continue
            if info.kind == "reduce":
                ready = maps_done.get(info.step, True)
            elif info.step == 0:
                ready = True
            else:
                before = info.step - 1
                ready = self.task_id("map" if self.plan.steps[before].map_only else "reduce", before,
                                     info.index) in self.commits
            task.blocked = not ready
            if ready and task.state is TaskState.WAITING:
                self.scheduler.release(task_id)
            elif not ready and task.state is TaskState.PENDING:
                self.scheduler.hold(task_id)

    def started(self, attempt: str) -> bool:
        """Whether ``attempt`` was started for this job (by this coordinator, or one before a restart)."""
        return attempt in self._attempt_nodes

    def adopted(self, attempt: str, node: str, now: float) -> None:
        """The scheduler took over an attempt started before a coordinator restart."""
        self._attempt_nodes[attempt] = node
        self._attempt_started.setdefault(attempt, now)

    def restore(self, attempts: list[tuple[str, str, float, float | None, bool | None, str]]) -> None:
        """Attempts of an earlier coordinator incarnation: (attempt, node, started, ended, ok, error)."""
        for attempt, node, started, ended, ok, error in attempts:
            self._attempt_nodes[attempt] = node
            self._attempt_started[attempt] = started
            if ended is not None:
                self._remember(m.AttemptView(task=task_of(attempt), attempt=attempt, node=node, ok=bool(ok),
                                             started=started, ended=ended, error=error))

    def restore_succeeded(self, status: m.JobStatusView, ended_at: float) -> None:
        """The job had succeeded before a restart: it is done, as ``status`` (kept when it ended) tells."""
        self.move("succeeded")
        self.ended_at = ended_at
        self.step = len(self.plan.steps) - 1
        self._kept = status

    def lost(self, attempt: str, error: str, now: float) -> None:
        """An attempt was written off with its node (the scheduler has re-queued its task)."""
        self._record(task_of(attempt), attempt, False, now, error)

    def ended_late(self, attempt: str, ok: bool, error: str, now: float) -> None:
        """An attempt stopped after its job had ended (its outputs go with the job's): history only."""
        self._record(task_of(attempt), attempt, ok, now, error)

    def kill(self, now: float) -> bool:
        """The user stops the job. False when it has already ended."""
        if self.state not in ("created", "running"):
            return False
        self.move("killed")
        self.started_at = self.started_at or now
        self.ended_at = now
        self.error = m.JobFailure(error="killed by the user")
        return True

    def attempt_outputs(self) -> list[tuple[str, range]]:
        """Every attempt ever started, with the partitions it may have written (a map's of a step with
        reducers; none for the others, whose output is one whole object), for cleanup."""
        out = []
        for attempt in self._attempt_nodes:
            info = self.tasks.get(task_of(attempt))
            if info is not None:
                step = self.plan.steps[info.step]
                shuffles = info.kind == "map" and not step.map_only
                out.append((attempt, range(step.reducers if shuffles else 0)))
        return out

    def _record(self, task_id: str, attempt: str, ok: bool, now: float, error: str) -> None:
        self._remember(m.AttemptView(task=task_id, attempt=attempt, node=self._attempt_nodes.get(attempt, ""),
                                     ok=ok, started=self._attempt_started.get(attempt, now), ended=now,
                                     error=error, speculative=attempt in self._speculative))

    def _remember(self, view: m.AttemptView) -> None:
        """An attempt written off (its node silent) may report later: the status lists it once, as it
        was last heard of."""
        self.history.pop(view.attempt, None)
        self.history[view.attempt] = view

    def committed(self, record: im.Commit, now: float) -> None:
        """The commit record of a task is written (confirmed by the store): move the job forward when a
        phase completes."""
        if record.task_id in self.commits:
            return
        if record.task_id in self.scheduler.tasks:
            self.scheduler.commit_written(record.task_id, record.attempt)
        self.commits[record.task_id] = record
        self._task_counters[record.task_id] = record.counters
        if self.state == "running":
            self._advance(now)
            self.gate()  # the tasks that read this output may run

    def _advance(self, now: float) -> None:
        """The job has succeeded once every task of its last phase is committed; ``step`` is the first step
        with a task not committed (for status)."""
        if all(t in self.commits for t in self._last_phase):
            self.step = len(self.plan.steps) - 1
            self.move("succeeded")
            self.ended_at = now
            return
        self.step = min((i.step for t, i in self.tasks.items() if t not in self.commits), default=0)

    # --- reporting -----------------------------------------------------------------------------------

    def status(self, now: float) -> m.JobStatusView:
        def count(kind: str, state: TaskState | None = None) -> int:
            ids = [t for t, info in self.tasks.items() if info.kind == kind]
            if state is None:
                return len(ids)
            return sum(1 for t in ids if t in self.scheduler.tasks and self.scheduler.tasks[t].state is state)

        wall = self.wall_offset
        ended = self.state in ENDED
        if self._kept is not None:
            return dataclasses.replace(self._kept, state="succeeded" if self.finalized else "finishing")
        return m.JobStatusView(
            name=self.name, state="finishing" if ended and not self.finalized else self.state,
            step=self.step, steps=len(self.plan.steps), maps=count("map"),
            maps_done=sum(1 for t, i in self.tasks.items() if i.kind == "map" and t in self.commits),
            reduces=count("reduce"),
            reduces_done=sum(1 for t, i in self.tasks.items() if i.kind == "reduce" and t in self.commits),
            running=count("map", TaskState.RUNNING) + count("reduce", TaskState.RUNNING),
            counters=tuple((g, n, v) for (g, n), v in sorted(self.counters.items())),
            error=self.error, output=self.plan.output,
            seconds=(self.ended_at or now) - self.started_at if self.started_at else 0.0,
            attempts=tuple(dataclasses.replace(h, started=h.started + wall, ended=h.ended + wall)
                           for h in reversed(list(itertools.islice(reversed(self.history.values()), 200)))),
            speculative_attempts=len(self._speculative), excluded_nodes=tuple(sorted(self.excluded_nodes)),
            input_bytes=sum(size for _, size in self.plan.inputs),
            started=self.started_at + wall if self.started_at else 0.0, phases=self.phases(),
            running_attempts=tuple(
                m.RunningAttemptView(task=t, attempt=a, node=n, started=self._attempt_started.get(a, 0.0) + wall,
                                     speculative=a in self._speculative)
                for t in self.tasks if t in self.scheduler.tasks for a, n in self.scheduler.tasks[t].running.items()))

    def phases(self) -> tuple[m.PhaseView, ...]:
        """Progress of each phase of each step: tasks done, running and failed, and input bytes read."""
        totals: dict[tuple[int, str], list[int]] = {}
        for task_id, info in self.tasks.items():
            row = totals.setdefault((info.step, info.kind), [0, 0, 0, 0, 0, 0])
            split = info.split()
            length = split.end - split.start if split is not None else 0
            row[0] += 1
            row[4] += length
            task = self.scheduler.tasks.get(task_id)
            if task_id in self.commits:
                row[1] += 1
                row[5] += length
            elif task is not None:
                row[2] += len(task.running)
                row[5] += int(length * max([task.progress.get(a, 0.0) for a in task.running] or [0.0]))
            if task is not None:
                row[3] += task.errors
        return tuple(m.PhaseView(step=step, kind=kind, tasks=t, done=d, running=r, failed=f, bytes=b, bytes_read=br)
                     for (step, kind), (t, d, r, f, b, br) in sorted(totals.items(), key=lambda kv: (
                         kv[0][0], kv[0][1] != "map")))

    def summary(self, now: float) -> m.JobSummary:
        return summary_of(self.status(now))
