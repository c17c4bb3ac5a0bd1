"""The vocabulary of the coordinator's core (:mod:`dynamr.mapreduce.control`): events in, instructions out.

Events are facts the shell observed (a request arrived, an effect completed or failed, time passed);
instructions are effects the core asks for. Both are small frozen dataclasses; none carries a clock (the
time comes in beside each event) and none does anything by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dynamr.mapreduce.intermediate import Commit
from dynamr.mapreduce.jobrun import JobPlan
from dynamr.mapreduce.splits import Split
from dynamr.rpc.messages import AttemptReport, JobFailure, JobStatusView, TaskSpec

# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobSubmitted:
    name: str
    plan: JobPlan
    run: bool = True
    #: which nodes hold each split's first chunk (the scheduler prefers them); None: no preference
    locate: Callable[[Split], set[str]] | None = None


@dataclass(frozen=True, slots=True)
class RunRequested:
    name: str


@dataclass(frozen=True, slots=True)
class KillRequested:
    name: str


@dataclass(frozen=True, slots=True)
class ForgetRequested:
    """Delete a job that is not running (its files are already removed by the shell)."""

    name: str


@dataclass(frozen=True, slots=True)
class WorkerPolled:
    node: str
    incarnation: str
    seq: int
    free_slots: int
    running: tuple[str, ...] = ()
    progress: tuple[float, ...] = ()
    reports: tuple[AttemptReport, ...] = ()


@dataclass(frozen=True, slots=True)
class CommitWritten:
    """The commit record ``record`` was written, or one already there stays in force (``in_force``), and
    the part file it names was published. ``lost``: it could not be, the attempt's output is gone (why)."""

    job: str
    record: Commit
    in_force: Commit
    lost: str = ""


@dataclass(frozen=True, slots=True)
class CommitFailed:
    """Writing ``record`` failed (it may or may not have been stored)."""

    job: str
    record: Commit
    error: str


@dataclass(frozen=True, slots=True)
class FinalizeDone:
    job: str


@dataclass(frozen=True, slots=True)
class FinalizeFailed:
    job: str
    error: str


@dataclass(frozen=True, slots=True)
class OutputsDeleted:
    """A confirmed :class:`DeleteOutputs` is done."""

    job: str
    attempt: str


@dataclass(frozen=True, slots=True)
class DeleteFailed:
    job: str
    attempt: str
    error: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the shell ticks a few times a second)."""


Event = (JobSubmitted | RunRequested | KillRequested | ForgetRequested | WorkerPolled | CommitWritten | CommitFailed
         | FinalizeDone | FinalizeFailed | OutputsDeleted | DeleteFailed | Tick)

# --- instructions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyToWorker:
    """The answer to a poll: tasks to start, attempts to kill, reports handled."""

    node: str
    seq: int
    assignments: tuple[TaskSpec, ...]
    kills: tuple[str, ...]
    acked: tuple[str, ...]
    #: commit records are being written and the worker has a free slot: tasks may become ready within
    #: moments (the last map's commit makes the reduces ready), so it should poll again soon
    soon: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """A request cannot be done (the shell answers it with this message)."""

    job: str
    message: str
    #: the request can be done shortly (the job is being cleaned up): the shell answers "busy"
    busy: bool = False


@dataclass(frozen=True, slots=True)
class WriteCommit:
    """Write the task's commit record unless one is in force (a record naming a ``superseded`` attempt is
    void); with ``publish``, then make the output of the attempt in force the part file at that path; answer
    with CommitWritten or CommitFailed."""

    job: str
    record: Commit
    superseded: frozenset[str]
    publish: str = ""


@dataclass(frozen=True, slots=True)
class DeleteOutputs:
    """Delete one attempt's outputs (its partitions, and its whole output). Best effort while its job runs
    (the job's cleanup deletes every attempt's anyway); with ``confirm`` (its job is already cleaned up)
    answer OutputsDeleted or DeleteFailed."""

    job: str
    attempt: str
    partitions: tuple[int, ...]
    local_intermediate: str
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class DeleteCommit:
    """Delete a void commit record (best effort: a record naming a superseded attempt is ignored anyway).
    With ``attempt``, only a record naming that attempt is deleted (a job of the same name may have written
    its own since). With ``confirm`` (a finalized job's record whose write may have landed after its
    cleanup) answer OutputsDeleted or DeleteFailed, naming :func:`commit_garbage` as the attempt."""

    job: str
    task: str
    attempt: str = ""
    confirm: bool = False


def commit_garbage(task: str, attempt: str) -> str:
    """How the core's garbage and sweeps name a commit record to delete (attempts are named as they are)."""
    return f"commit:{task}:{attempt}"


@dataclass(frozen=True, slots=True)
class Finalize:
    """The job ended and nothing of it runs: mark success (``_SUCCESS``) if it succeeded, then delete every
    attempt's outputs and every commit record; answer FinalizeDone or FinalizeFailed."""

    job: str
    succeeded: bool
    plan: JobPlan
    #: every attempt ever started, with the partitions it may have written
    attempts: tuple[tuple[str, range], ...]
    #: every task of the job (their commit records go)
    tasks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PersistJob:
    name: str
    plan: JobPlan
    created: float


@dataclass(frozen=True, slots=True)
class PersistStarted:
    name: str
    started: float


@dataclass(frozen=True, slots=True)
class PersistEnded:
    """A job ended (kept before its cleanup, so a restart finishes the cleanup instead of running it again)."""

    name: str
    state: str
    ended: float
    error: JobFailure | None
    #: a job that succeeded: its status then (a restart finalizes it from this: its cleanup may have deleted
    #: the commit records that tell it succeeded)
    status: JobStatusView | None = None


@dataclass(frozen=True, slots=True)
class PersistFinalized:
    name: str
    state: str
    ended: float
    status: JobStatusView


@dataclass(frozen=True, slots=True)
class PersistAttempt:
    job: str
    task: str
    attempt: str
    node: str
    started: float


@dataclass(frozen=True, slots=True)
class PersistAttemptEnded:
    attempt: str
    ok: bool
    error: str
    ended: float
    #: what the attempt printed, and the user's traceback of a failure (kept as the attempt's log)
    output: str = ""
    traceback: str = ""
    #: why it failed: "" (its code or node), "lost" (its node died), or the report's cause
    cause: str = ""


@dataclass(frozen=True, slots=True)
class PersistSwept:
    """A finalized job's late sweep is done: its attempts need not be kept any more."""

    name: str


@dataclass(frozen=True, slots=True)
class PersistForgotten:
    """A job was deleted: drop its record and its attempts."""

    name: str


Instruction = (ReplyToWorker | Refused | WriteCommit | DeleteOutputs | DeleteCommit | Finalize | PersistJob
               | PersistStarted | PersistEnded | PersistFinalized | PersistAttempt | PersistAttemptEnded
               | PersistSwept | PersistForgotten)
PERSIST = (PersistJob, PersistStarted, PersistEnded, PersistFinalized, PersistAttempt, PersistAttemptEnded,
           PersistSwept, PersistForgotten)


@dataclass(frozen=True, slots=True)
class StoredJobView:
    """A job as the coordinator's durable state holds it (what a restart starts from)."""

    name: str
    plan: JobPlan
    state: str
    started: float
    ended: float
    error: JobFailure | None
    final_status: JobStatusView | None
    #: (attempt, node, started, ended, ok, error) of each attempt started
    attempts: tuple[tuple[str, str, float, float | None, bool | None, str], ...] = ()
    #: a job that succeeded and was not yet finalized: its status when it ended
    ended_status: JobStatusView | None = None
