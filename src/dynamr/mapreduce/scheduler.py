"""The coordinator's scheduling logic as a pure state machine: tasks, attempts, priorities, locality.

Tasks wait in a priority queue (seed 001: priority 1 to 5; a task that failed comes back one level higher).
When a node offers free slots, each slot takes the best task: highest priority first, then a task whose
input has a replica on that node (seed 000's locality), then the oldest. Every run of a task is an
*attempt* with its own id; the first attempt to succeed is committed and any later success of another
attempt is reported as a loser whose output must be cleaned up. A task that fails ``max_attempts`` times
fails its job (an attempt lost with its node does not count); a node on which a job's attempts failed
``exclude_after`` times gets no more tasks of that job (unless no other live node would take them).
A node that stops heart-beating for ``node_timeout`` seconds is dead: its running attempts
are lost and their tasks go back to the queue, one priority level up. A succeeded task whose committed
output is lost (every replica gone) is *reopened* and runs again, while the tasks reading that output
wait; an attempt that failed only because its input was lost is not counted against its task.

Speculative execution (seeds 001 and 003, after Hadoop's LATE): once every task of a phase (a job's maps
or reduces of one step) has started, a slot left free may take a backup attempt of a straggler. A running
attempt is a straggler when, at the phase's median speed so far (input bytes per second of the attempts
that succeeded), a fresh copy would finish before it does and it is ``slow_factor`` times slower than
that median. Its estimated end comes from its progress (the fraction of its input consumed), or, when that
is not known, from its elapsed time alone; an attempt is not judged before it has run
``speculative_after`` seconds (a backup of a short task gains little and costs a process). Backups go to
another node, at most one per task and at most ``speculative_share`` of a job's tasks; the first attempt
to succeed wins and the other is killed.

No I/O and no clock of its own: the coordinator feeds events in with the time and carries out what comes
back.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

MIN_PRIORITY, MAX_PRIORITY = 1, 5


class TaskState(Enum):
    WAITING = "waiting"  # not runnable yet (its inputs are not ready)
    PENDING = "pending"
    RUNNING = "running"
    COMMITTING = "committing"  # an attempt succeeded; its commit record is being written
    SUCCEEDED = "succeeded"  # the commit record is written (confirmed)
    FAILED = "failed"


_S = TaskState
#: every legal move of a task, in one place (anything else is a bug: :class:`IllegalTransition`)
TASK_TRANSITIONS: frozenset[tuple[TaskState, TaskState]] = frozenset({
    (_S.WAITING, _S.PENDING), (_S.PENDING, _S.WAITING),  # inputs ready / an input is produced again
    (_S.PENDING, _S.RUNNING), (_S.RUNNING, _S.RUNNING),  # assigned; a backup or an adopted attempt
    (_S.WAITING, _S.RUNNING),  # an attempt adopted after a coordinator restart, before its inputs replayed
    (_S.RUNNING, _S.PENDING),  # every attempt failed or was lost: retry
    (_S.RUNNING, _S.WAITING),  # an attempt found an input lost: wait for it
    (_S.RUNNING, _S.COMMITTING),  # an attempt succeeded: write the commit record
    (_S.PENDING, _S.COMMITTING), (_S.WAITING, _S.COMMITTING),  # ...one written off before it reported
    (_S.COMMITTING, _S.SUCCEEDED),  # the commit record is written
    (_S.PENDING, _S.SUCCEEDED), (_S.WAITING, _S.SUCCEEDED), (_S.RUNNING, _S.SUCCEEDED),  # a record found
    (_S.SUCCEEDED, _S.PENDING),  # its committed output was lost: run it again
    (_S.COMMITTING, _S.PENDING),  # ...found lost as it was being published
    (_S.RUNNING, _S.FAILED), (_S.SUCCEEDED, _S.FAILED), (_S.COMMITTING, _S.FAILED),  # out of attempts
})


class IllegalTransition(RuntimeError):
    """A state machine was asked for a move its transition table does not allow (a bug, never user error)."""


def move(task: Task, new: TaskState) -> None:
    if (task.state, new) not in TASK_TRANSITIONS:
        raise IllegalTransition(f"task {task.task_id}: {task.state.value} -> {new.value} is not a legal move")
    task.state = new


@dataclass
class Task:
    task_id: str
    #: nodes holding the task's input (preferred placement)
    preferred: frozenset[str] = frozenset()
    priority: int = MIN_PRIORITY
    state: TaskState = TaskState.PENDING
    attempts: list[str] = field(default_factory=list)
    running: dict[str, str] = field(default_factory=dict)  # attempt -> node
    failures: list[str] = field(default_factory=list)
    #: attempts that raised (attempts lost with a dead node do not count: the task is not at fault)
    errors: int = 0
    #: times its committed output was lost and it had to run again
    losses: int = 0
    committed: str | None = None
    #: the attempt whose commit record is being written (state COMMITTING)
    committing: str | None = None
    order: int = 0
    #: the job the task belongs to, and its phase (tasks compared with each other for speculation)
    job: str = ""
    phase: str = ""
    #: how much input the task has (bytes; 1 when not known): speeds are compared per unit of it
    weight: int = 1
    started: dict[str, float] = field(default_factory=dict)  # attempt -> time it was assigned
    #: attempt -> fraction of its input consumed, as last reported (absent: not known)
    progress: dict[str, float] = field(default_factory=dict)
    speculated: bool = False
    #: an input of the task is being produced again: no new attempt (not even a backup) may start
    blocked: bool = False
    #: not handed out before this time (a task re-queued after the store was unavailable to it backs off)
    ready_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Assignment:
    task_id: str
    attempt_id: str
    node: str
    local: bool
    speculative: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reported attempt result means."""

    commit: bool  # True: this attempt's output is the task's output
    task_failed: bool = False  # True: the task will not be retried (its job fails)
    retry: bool = False


class Scheduler:
    def __init__(self, *, max_attempts: int = 4, node_timeout: float = 5.0, attempt_prefix: str = "",
                 exclude_after: int = 3, speculative: bool = True, slow_factor: float = 2.0,
                 speculative_share: float = 0.1, speculative_after: float = 5.0) -> None:
        self.max_attempts = max_attempts
        self.node_timeout = node_timeout
        #: put before each attempt number (a restarted coordinator's incarnation: ids never repeat)
        self.attempt_prefix = attempt_prefix
        self.exclude_after = exclude_after
        self.speculative = speculative
        self.slow_factor = slow_factor
        self.speculative_share = speculative_share
        #: seconds an attempt runs before it may be judged (a backup of a short task gains little)
        self.speculative_after = speculative_after
        self.tasks: dict[str, Task] = {}
        self._attempts: dict[str, str] = {}  # attempt -> task
        self._last_heard: dict[str, float] = {}
        self._order = itertools.count()
        self._ids = itertools.count(1)
        #: phase -> speeds (weight per second) of the attempts that succeeded
        self._speeds: dict[str, list[float]] = {}
        #: job -> tasks, and backups started
        self._job_tasks: dict[str, int] = {}
        self._backups: dict[str, int] = {}
        #: (job, node) -> attempts that failed there
        self._node_failures: dict[tuple[str, str], int] = {}
        #: the pending tasks (kept as tasks move, so a poll looks at these instead of every task)
        self._pending: dict[str, Task] = {}
        #: attempt -> node of every running attempt (the union of the tasks' ``running``)
        self._running_at: dict[str, str] = {}

    # --- tasks ---------------------------------------------------------------------------------------

    def add(self, task_id: str, preferred: Iterable[str] = (), *, runnable: bool = True, job: str = "",
            phase: str = "", weight: int = 1) -> Task:
        if task_id in self.tasks:
            raise ValueError(f"task {task_id} exists")
        task = Task(task_id, frozenset(preferred), state=TaskState.PENDING if runnable else TaskState.WAITING,
                    order=next(self._order), job=job, phase=phase, weight=max(1, weight))
        self.tasks[task_id] = task
        if runnable:
            self._pending[task_id] = task
        self._job_tasks[job] = self._job_tasks.get(job, 0) + 1
        return task

    def _move(self, task: Task, new: TaskState) -> None:
        move(task, new)
        if new is TaskState.PENDING:
            self._pending[task.task_id] = task
        else:
            self._pending.pop(task.task_id, None)

    def _run(self, task: Task, attempt: str, node: str) -> None:
        """``attempt`` of ``task`` runs on ``node`` (the task's own record and the index by node)."""
        task.running[attempt] = node
        self._running_at[attempt] = node

    def _unrun(self, task: Task, attempt: str) -> str | None:
        """``attempt`` of ``task`` no longer runs: the node it ran on, or None if it was not running."""
        self._running_at.pop(attempt, None)
        task.progress.pop(attempt, None)
        return task.running.pop(attempt, None)

    def release(self, task_id: str) -> None:
        """A waiting task's inputs are ready: it may run."""
        task = self.tasks[task_id]
        if task.state is TaskState.WAITING:
            self._move(task, TaskState.PENDING)

    def hold(self, task_id: str) -> None:
        """A pending task's inputs are no longer all there (one is being produced again): it waits."""
        task = self.tasks[task_id]
        if task.state is TaskState.PENDING:
            self._move(task, TaskState.WAITING)

    def reopen(self, task_id: str, reason: str) -> bool:
        """A succeeded task's committed output was lost: run it again, one priority level up. False when its
        output was lost ``max_attempts`` times (the task has failed: its job fails)."""
        task = self.tasks[task_id]
        task.committed = task.committing = None
        task.failures.append(reason)
        task.losses += 1
        if task.losses >= self.max_attempts:
            self._move(task, TaskState.FAILED)
            return False
        self._move(task, TaskState.PENDING)
        task.speculated = False
        task.priority = min(MAX_PRIORITY, task.priority + 1)
        return True

    def remove(self, task_ids: Iterable[str]) -> dict[str, str]:
        """Forget tasks (their job ended); returns the attempts still running (attempt -> node): kill them."""
        running: dict[str, str] = {}
        for task_id in task_ids:
            task = self.tasks.pop(task_id, None)
            if task is None:
                continue
            self._pending.pop(task_id, None)
            running.update(task.running)
            for attempt in task.running:
                self._running_at.pop(attempt, None)
            for attempt in task.attempts:
                self._attempts.pop(attempt, None)
            self._speeds.pop(task.phase, None)
            self._job_tasks[task.job] = self._job_tasks.get(task.job, 1) - 1
            if self._job_tasks[task.job] <= 0:
                self._job_tasks.pop(task.job, None)
                self._backups.pop(task.job, None)
                for key in [k for k in self._node_failures if k[0] == task.job]:
                    del self._node_failures[key]
        return running

    # --- nodes ---------------------------------------------------------------------------------------

    def heartbeat(self, node: str, now: float) -> None:
        self._last_heard[node] = now

    def has_pending_for(self, node: str, now: float) -> bool:
        """Whether a pending task could go to ``node`` now (what :meth:`offer` would hand out first)."""
        return any(t.ready_at <= now and not self.excluded(t.job, node) for t in self._pending.values())

    def next_ready(self, now: float) -> float | None:
        """The earliest time after ``now`` at which a pending task that is backing off may be handed out."""
        return min((t.ready_at for t in self._pending.values() if t.ready_at > now), default=None)

    def offer(self, node: str, free_slots: int, now: float) -> list[Assignment]:
        """A node has ``free_slots``: hand it the best pending tasks, then backups of stragglers."""
        self.heartbeat(node, now)
        pending = [t for t in self._pending.values() if t.ready_at <= now and not self.excluded(t.job, node)]
        pending.sort(key=lambda t: (-t.priority, node not in t.preferred, t.order))
        out = [self._start(task, node, now) for task in pending[:max(0, free_slots)]]
        if self.speculative and len(out) < free_slots:
            for task in self.stragglers(node, now):
                if len(out) >= free_slots or not self._may_back_up(task.job):
                    continue
                task.speculated = True
                self._backups[task.job] = self._backups.get(task.job, 0) + 1
                out.append(self._start(task, node, now, speculative=True))
        return out

    def _start(self, task: Task, node: str, now: float, speculative: bool = False) -> Assignment:
        attempt = f"{task.task_id}#{self.attempt_prefix}{next(self._ids)}"
        task.attempts.append(attempt)
        self._run(task, attempt, node)
        task.started[attempt] = now
        self._move(task, TaskState.RUNNING)
        self._attempts[attempt] = task.task_id
        return Assignment(task.task_id, attempt, node, node in task.preferred, speculative)

    def progress(self, attempt: str, fraction: float) -> None:
        """A worker reported how much of its input ``attempt`` has consumed (negative: not known)."""
        task = self._task_of(attempt)
        if task is not None and attempt in task.running and 0.0 <= fraction <= 1.0:
            task.progress[attempt] = fraction

    def stragglers(self, node: str, now: float) -> list[Task]:
        """Running tasks worth a backup attempt on ``node``, the latest-finishing first (see the module)."""
        open_phases = {t.phase for t in self._pending.values()}
        found: list[tuple[float, Task]] = []
        for task in self.tasks.values():
            if (task.state is not TaskState.RUNNING or task.speculated or task.blocked or len(task.running) != 1
                    or task.phase in open_phases or node in task.running.values()
                    or self.excluded(task.job, node) or not self._speeds.get(task.phase)
                    or not self._may_back_up(task.job)):
                continue
            fresh = task.weight / statistics.median(self._speeds[task.phase])  # a new copy's expected time
            attempt = next(iter(task.running))
            elapsed = now - task.started.get(attempt, now)
            if elapsed < self.speculative_after:
                continue
            fraction = task.progress.get(attempt)
            if fraction is None or fraction >= 1.0:  # not known, or all input read but still busy
                expected_end = elapsed  # a lower bound of its total time
                remaining = float("inf") if elapsed > fresh else 0.0
            elif fraction <= 0.0:
                expected_end = remaining = float("inf") if elapsed > fresh else 0.0
            else:
                expected_end = elapsed / fraction
                remaining = expected_end - elapsed
            if expected_end > self.slow_factor * fresh and remaining > fresh:
                found.append((remaining, task))
        found.sort(key=lambda item: (-item[0], item[1].order))
        return [task for _, task in found]

    def _may_back_up(self, job: str) -> bool:
        return self._backups.get(job, 0) + 1 <= self.speculative_share * self._job_tasks.get(job, 0)

    def excluded_nodes(self, job: str) -> list[str]:
        return sorted(node for (j, node) in self._node_failures if j == job and self.excluded(job, node))

    def excluded(self, job: str, node: str) -> bool:
        """Whether ``node`` had too many failed attempts of ``job`` (and another live node could take them)."""
        if self._node_failures.get((job, node), 0) < self.exclude_after:
            return False
        return any(self._node_failures.get((job, other), 0) < self.exclude_after
                   for other in self._last_heard if other != node)

    def alive(self, node: str) -> bool:
        return node in self._last_heard

    def dead_nodes_at(self, now: float) -> list[str]:
        """Nodes silent for longer than the timeout (nothing is changed: see :meth:`node_lost`)."""
        return sorted(n for n, heard in self._last_heard.items() if now - heard > self.node_timeout)

    def dead_nodes(self, now: float) -> dict[str, list[str]]:
        """Nodes silent for longer than the timeout, each with the attempts it lost (their tasks are
        re-queued)."""
        dead = [n for n, heard in self._last_heard.items() if now - heard > self.node_timeout]
        return {node: self.node_lost(node) for node in dead}

    def node_lost(self, node: str) -> list[str]:
        """A node is gone: every attempt it was running is lost (returned); their tasks go back to the queue
        one priority level up, unless another attempt of theirs is still running."""
        self._last_heard.pop(node, None)
        lost_attempts = []
        for task in self.tasks.values():
            lost = [a for a, n in task.running.items() if n == node]
            for attempt in lost:
                self._unrun(task, attempt)
                task.failures.append(f"attempt {attempt} lost with node {node}")
            lost_attempts.extend(lost)
            if lost and task.state is TaskState.RUNNING and not task.running:
                self._move(task, TaskState.PENDING)
                task.priority = min(MAX_PRIORITY, task.priority + 1)
        return lost_attempts

    def attempt_lost(self, attempt: str, reason: str, ready_at: float = 0.0) -> bool:
        """One attempt is gone without a result (its node never got it, or does not run it any more): its
        task goes back to the queue unless another attempt runs, not to be handed out before ``ready_at``;
        nothing is counted against the task or the node. False when the attempt was not running."""
        task = self._task_of(attempt)
        if task is None or self._unrun(task, attempt) is None:
            return False
        task.failures.append(reason)
        if task.state is TaskState.RUNNING and not task.running:
            self._move(task, TaskState.PENDING)
            task.ready_at = ready_at
        return True

    # --- attempt results -----------------------------------------------------------------------------

    def succeeded(self, attempt: str, now: float | None = None) -> Outcome:
        task = self._task_of(attempt)
        if task is None:
            return Outcome(commit=False)
        self._unrun(task, attempt)
        if task.state not in (TaskState.RUNNING, TaskState.PENDING, TaskState.WAITING):
            return Outcome(commit=False)  # a loser (another attempt committed), or the task failed
        # an attempt written off (its node seemed dead) that did finish is as good as any: it wins
        task.committing = attempt
        self._move(task, TaskState.COMMITTING)
        started = task.started.get(attempt)
        if now is not None and started is not None:
            self._speeds.setdefault(task.phase, []).append(task.weight / max(now - started, 1e-3))
        return Outcome(commit=True)

    def failed(self, attempt: str, error: str) -> Outcome:
        task = self._task_of(attempt)
        node = self._unrun(task, attempt) if task is not None else None
        if task is None or node is None:
            return Outcome(commit=False)
        key = (task.job, node)
        self._node_failures[key] = self._node_failures.get(key, 0) + 1
        task.failures.append(error)
        task.errors += 1
        if task.state is not TaskState.RUNNING or task.running:
            return Outcome(commit=False)  # another attempt is still going, or the task is already done
        if task.errors >= self.max_attempts:
            self._move(task, TaskState.FAILED)
            return Outcome(commit=False, task_failed=True)
        self._move(task, TaskState.PENDING)
        task.priority = min(MAX_PRIORITY, task.priority + 1)
        return Outcome(commit=False, retry=True)

    def input_lost(self, attempt: str, reason: str) -> None:
        """``attempt`` ended because an input it needed was lost: no fault of its task or node (nothing is
        counted); the task waits for that input to be produced again, unless another attempt still runs."""
        task = self._task_of(attempt)
        if task is None or self._unrun(task, attempt) is None:
            return
        task.failures.append(reason)
        if task.state is TaskState.RUNNING and not task.running:
            self._move(task, TaskState.WAITING)

    def other_attempts(self, attempt: str) -> dict[str, str]:
        """Attempts of the same task still running besides ``attempt`` (attempt -> node)."""
        task = self._task_of(attempt)
        return {} if task is None else {a: n for a, n in task.running.items() if a != attempt}

    def is_running(self, attempt: str, node: str) -> bool:
        """Whether the scheduler counts ``attempt`` as running on ``node`` (not lost, not ended)."""
        task = self._task_of(attempt)
        return task is not None and task.running.get(attempt) == node

    def committed_attempt(self, attempt: str) -> str | None:
        """The attempt committed (or being committed) for ``attempt``'s task, if any."""
        task = self._task_of(attempt)
        return None if task is None else task.committed or task.committing

    def knows(self, attempt: str) -> bool:
        return attempt in self._attempts

    def adopt(self, task_id: str, attempt: str, node: str, now: float | None = None) -> bool:
        """Take over an attempt this scheduler did not start (one started before a coordinator restart) as a
        running attempt of its task, if the task still needs it. True when adopted."""
        task = self.tasks.get(task_id)
        if task is None or task.state not in (TaskState.PENDING, TaskState.RUNNING):
            return False
        task.attempts.append(attempt)
        self._run(task, attempt, node)
        if now is not None:
            task.started[attempt] = now
        self._move(task, TaskState.RUNNING)
        self._attempts[attempt] = task_id
        return True

    def commit_written(self, task_id: str, attempt: str) -> None:
        """The task's commit record, naming ``attempt``, is in the store (written now, or found there by a
        restarted coordinator): the task has succeeded."""
        task = self.tasks[task_id]
        if task.state is TaskState.SUCCEEDED and task.committed == attempt:
            return
        task.committed = attempt
        task.committing = None
        self._move(task, TaskState.SUCCEEDED)
        if attempt not in self._attempts:  # found in the store: an earlier incarnation's attempt
            self._attempts[attempt] = task_id
            task.attempts.append(attempt)  # so that it is forgotten with the task

    def commit_found(self, task_id: str, attempt: str) -> None:
        """A restarted coordinator found the task's commit record naming ``attempt``, but not that what
        follows the write was done (its part file published): the task is committing again."""
        task = self.tasks[task_id]
        task.committing = attempt
        if attempt not in self._attempts:  # an earlier incarnation's attempt
            self._attempts[attempt] = task_id
            task.attempts.append(attempt)
        self._move(task, TaskState.COMMITTING)

    def committing(self) -> list[tuple[str, str]]:
        """(task, attempt) of every task whose commit record is being written."""
        return [(t.task_id, t.committing) for t in self.tasks.values()
                if t.state is TaskState.COMMITTING and t.committing is not None]

    def _task_of(self, attempt: str) -> Task | None:
        task_id = self._attempts.get(attempt)
        return self.tasks.get(task_id) if task_id is not None else None

    def running_on(self, node: str) -> list[str]:
        return [a for a, n in self._running_at.items() if n == node]

    def all_done(self, task_ids: Iterable[str]) -> bool:
        return all(self.tasks[t].state is TaskState.SUCCEEDED for t in task_ids)
