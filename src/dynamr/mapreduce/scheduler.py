"""The coordinator's scheduling logic as a pure state machine: tasks, attempts, priorities, locality.

Tasks wait in a priority queue (seed 001: priority 1 to 5; a task that failed comes back one level higher).
When a node offers free slots, each slot takes the best task: highest priority first, then a task whose
input has a replica on that node (seed 000's locality), then the oldest. Every run of a task is an
*attempt* with its own id; the first attempt to succeed is committed and any later success of another
attempt is reported as a loser whose output must be cleaned up. A task that fails ``max_attempts`` times
fails its job (an attempt lost with its node does not count).
A node that stops heart-beating for ``node_timeout`` seconds is dead: its running attempts
are lost and their tasks go back to the queue, one priority level up.

No I/O and no clock of its own: the coordinator feeds events in with the time and carries out what comes
back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

MIN_PRIORITY, MAX_PRIORITY = 1, 5


class TaskState(Enum):
    WAITING = "waiting"  # not runnable yet (its inputs are not ready)
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


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
    committed: str | None = None
    order: int = 0


@dataclass(frozen=True, slots=True)
class Assignment:
    task_id: str
    attempt_id: str
    node: str
    local: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reported attempt result means."""

    commit: bool  # True: this attempt's output is the task's output
    task_failed: bool = False  # True: the task will not be retried (its job fails)
    retry: bool = False


class Scheduler:
    def __init__(self, *, max_attempts: int = 4, node_timeout: float = 5.0, attempt_prefix: str = "") -> None:
        self.max_attempts = max_attempts
        self.node_timeout = node_timeout
        #: put before each attempt number (a restarted coordinator's incarnation: ids never repeat)
        self.attempt_prefix = attempt_prefix
        self.tasks: dict[str, Task] = {}
        self._attempts: dict[str, str] = {}  # attempt -> task
        self._last_heard: dict[str, float] = {}
        self._order = itertools.count()
        self._ids = itertools.count(1)

    # --- tasks ---------------------------------------------------------------------------------------

    def add(self, task_id: str, preferred: Iterable[str] = (), *, runnable: bool = True) -> Task:
        if task_id in self.tasks:
            raise ValueError(f"task {task_id} exists")
        task = Task(task_id, frozenset(preferred), state=TaskState.PENDING if runnable else TaskState.WAITING,
                    order=next(self._order))
        self.tasks[task_id] = task
        return task

    def release(self, task_id: str) -> None:
        """A waiting task's inputs are ready: it may run."""
        task = self.tasks[task_id]
        if task.state is TaskState.WAITING:
            task.state = TaskState.PENDING

    def remove(self, task_ids: Iterable[str]) -> dict[str, str]:
        """Forget tasks (their job ended); returns the attempts still running (attempt -> node): kill them."""
        running: dict[str, str] = {}
        for task_id in task_ids:
            task = self.tasks.pop(task_id, None)
            if task is None:
                continue
            running.update(task.running)
            for attempt in task.attempts:
                self._attempts.pop(attempt, None)
        return running

    # --- nodes ---------------------------------------------------------------------------------------

    def heartbeat(self, node: str, now: float) -> None:
        self._last_heard[node] = now

    def offer(self, node: str, free_slots: int, now: float) -> list[Assignment]:
        """A node has ``free_slots``: hand it the best pending tasks."""
        self.heartbeat(node, now)
        pending = [t for t in self.tasks.values() if t.state is TaskState.PENDING]
        pending.sort(key=lambda t: (-t.priority, node not in t.preferred, t.order))
        out = []
        for task in pending[:max(0, free_slots)]:
            attempt = f"{task.task_id}#{self.attempt_prefix}{next(self._ids)}"
            task.attempts.append(attempt)
            task.running[attempt] = node
            task.state = TaskState.RUNNING
            self._attempts[attempt] = task.task_id
            out.append(Assignment(task.task_id, attempt, node, node in task.preferred))
        return out

    def alive(self, node: str) -> bool:
        return node in self._last_heard

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
                del task.running[attempt]
                task.failures.append(f"attempt {attempt} lost with node {node}")
            lost_attempts.extend(lost)
            if lost and task.state is TaskState.RUNNING and not task.running:
                task.state = TaskState.PENDING
                task.priority = min(MAX_PRIORITY, task.priority + 1)
        return lost_attempts

    # --- attempt results -----------------------------------------------------------------------------

    def succeeded(self, attempt: str) -> Outcome:
        task = self._task_of(attempt)
        if task is None:
            return Outcome(commit=False)
        node = task.running.pop(attempt, None)
        if task.committed is not None or task.state is TaskState.FAILED or node is None:
            return Outcome(commit=False)  # a loser, or an attempt already written off
        task.committed = attempt
        task.state = TaskState.SUCCEEDED
        return Outcome(commit=True)

    def failed(self, attempt: str, error: str) -> Outcome:
        task = self._task_of(attempt)
        if task is None or task.running.pop(attempt, None) is None:
            return Outcome(commit=False)
        task.failures.append(error)
        task.errors += 1
        if task.state is not TaskState.RUNNING or task.running:
            return Outcome(commit=False)  # another attempt is still going, or the task is already done
        if task.errors >= self.max_attempts:
            task.state = TaskState.FAILED
            return Outcome(commit=False, task_failed=True)
        task.state = TaskState.PENDING
        task.priority = min(MAX_PRIORITY, task.priority + 1)
        return Outcome(commit=False, retry=True)

    def other_attempts(self, attempt: str) -> dict[str, str]:
        """Attempts of the same task still running besides ``attempt`` (attempt -> node)."""
        task = self._task_of(attempt)
        return {} if task is None else {a: n for a, n in task.running.items() if a != attempt}

    def is_running(self, attempt: str, node: str) -> bool:
        """Whether the scheduler counts ``attempt`` as running on ``node`` (not lost, not ended)."""
        task = self._task_of(attempt)
        return task is not None and task.running.get(attempt) == node

    def committed_attempt(self, attempt: str) -> str | None:
        """The attempt committed for ``attempt``'s task, if any."""
        task = self._task_of(attempt)
        return None if task is None else task.committed

    def knows(self, attempt: str) -> bool:
        return attempt in self._attempts

    def adopt(self, task_id: str, attempt: str, node: str) -> bool:
        """Take over an attempt this scheduler did not start (one started before a coordinator restart) as a
        running attempt of its task, if the task still needs it. True when adopted."""
        task = self.tasks.get(task_id)
        if task is None or task.committed is not None or task.state not in (TaskState.PENDING, TaskState.RUNNING):
            return False
        task.attempts.append(attempt)
        task.running[attempt] = node
        task.state = TaskState.RUNNING
        self._attempts[attempt] = task_id
        return True

    def mark_committed(self, task_id: str, attempt: str) -> None:
        """The task's commit record was found in the store (a restarted coordinator replaying its jobs)."""
        task = self.tasks[task_id]
        task.committed = attempt
        task.state = TaskState.SUCCEEDED
        self._attempts[attempt] = task_id

    def _task_of(self, attempt: str) -> Task | None:
        task_id = self._attempts.get(attempt)
        return self.tasks.get(task_id) if task_id is not None else None

    def running_on(self, node: str) -> list[str]:
        return [a for t in self.tasks.values() for a, n in t.running.items() if n == node]

    def all_done(self, task_ids: Iterable[str]) -> bool:
        return all(self.tasks[t].state is TaskState.SUCCEEDED for t in task_ids)
