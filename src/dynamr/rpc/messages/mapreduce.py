"""MapReduce's messages and the records they carry: jobs (plans, statuses), worker polls, task specs and
attempt reports."""

from __future__ import annotations

from dataclasses import dataclass

from dynamr.rpc.messages.base import Message, Record, record, register

# --- MapReduce: client <-> coordinator, worker <-> coordinator ------------------------------------------


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class StepPlan(Record):
    map_only: bool
    #: reduce tasks of the step (0 for a map-only step)
    reducers: int


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class JobPlan(Record):
    """A job as the client planned it (the coordinator never runs user code; validated by
    :func:`dynamr.mapreduce.jobplan.check_plan`)."""

    #: where the job's source file is stored, and the name the user knows it by
    source: str
    source_name: str
    #: (path, size) of every input file
    inputs: tuple[tuple[str, int], ...]
    output: str
    steps: tuple[StepPlan, ...]
    input_format: str = "text"
    local_inputs: bool = False
    local_output: bool = False
    #: a directory of the coordinator's (embedded mode) where intermediate data goes as plain files instead
    #: of the replicated store; empty: the store
    local_intermediate: str = ""
    split_size: int = 64 * 1024 * 1024
    options: tuple[tuple[str, str], ...] = ()
    #: the sampled partition state (range partitioning), msgpack-encoded; empty: none
    partition_state: bytes = b""
    job_class: str | None = None
    chunk_size: int = 4 * 1024 * 1024
    buffer_records: int = 1_000_000
    #: skip mode: a map that keeps failing on one record skips it (counted) instead of failing the job
    skip_bad_records: bool = False
    #: inputs read whole, one split each (files of records, whole files)
    whole_inputs: tuple[str, ...] = ()
    #: jobs of one process group may run in each other's task processes (the stages of one dataflow run:
    #: one program); empty: a task process serves this job alone
    process_group: str = ""
    #: the codec the final part files are written with ("gzip", "bzip2", "xz"); empty: none
    output_compression: str = ""
    #: small input files are packed into shared map tasks (dynamr.mapreduce.splits.combine_splits)
    combine_inputs: bool = True
    #: the cluster's task slots when the job was submitted (the coordinator fills it in; 0: not known),
    #: which decide how many tasks small files are packed into
    task_slots: int = 0


@register(40)
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitJob(Message):
    """Create a job under a unique name (with ``check_only``: only say whether the name is free)."""

    name: str
    plan: JobPlan | None = None
    run: bool = True
    #: only check that the name is free (before the client uploads anything)
    check_only: bool = False


@register(41)
@dataclass(frozen=True, slots=True, kw_only=True)
class RunJob(Message):
    name: str


@register(42)
@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatus(Message):
    name: str
    #: seconds the coordinator may hold the answer while the job has not ended (0: answer now)
    wait: float = 0.0


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class SplitRef(Record):
    """A byte range of an input file (see dynamr.mapreduce.splits.Split)."""

    index: int
    path: str
    start: int
    end: int
    file_size: int


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailure(Record):
    """Why a job failed (or that it was killed): the task, attempt and node, and the user's traceback."""

    task: str = ""
    attempt: str = ""
    node: str = ""
    error: str = ""
    traceback: str = ""
    #: the input byte range of the failing task, when it read one
    input: SplitRef | None = None
    #: what the failing attempt printed (bounded)
    output: str = ""


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptView(Record):
    """An attempt that ended (times are wall-clock seconds)."""

    task: str
    attempt: str
    node: str
    ok: bool
    started: float
    ended: float
    error: str = ""
    speculative: bool = False


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class RunningAttemptView(Record):
    task: str
    attempt: str
    node: str
    started: float
    speculative: bool = False


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseView(Record):
    """One phase (the maps or the reduces of one step) of a job, as progress shows it."""

    step: int
    #: map or reduce
    kind: str
    tasks: int
    done: int
    running: int
    #: attempts of its tasks that failed (raised) so far
    failed: int
    #: bytes of input of its tasks (0: not known, e.g. the output of an earlier step), and how many of them
    #: were read (tasks done whole, running ones by their reported progress)
    bytes: int = 0
    bytes_read: int = 0


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatusView(Record):
    """A job's state as ``dynamr status`` shows it."""

    name: str
    #: created, running, finishing (ended, being cleaned up), succeeded, failed or killed
    state: str
    output: str = ""
    step: int = 0
    steps: int = 1
    maps: int = 0
    maps_done: int = 0
    reduces: int = 0
    reduces_done: int = 0
    running: int = 0
    counters: tuple[tuple[str, str, int], ...] = ()
    error: JobFailure | None = None
    seconds: float = 0.0
    #: the latest attempts that ended (at most 200)
    attempts: tuple[AttemptView, ...] = ()
    speculative_attempts: int = 0
    excluded_nodes: tuple[str, ...] = ()
    running_attempts: tuple[RunningAttemptView, ...] = ()
    #: bytes of input (the sizes of the input files) and when the job started (wall-clock seconds; 0: not yet)
    input_bytes: int = 0
    started: float = 0.0
    #: each phase of each step, in order
    phases: tuple[PhaseView, ...] = ()


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class JobSummary(Record):
    """A line of ``dynamr jobs``."""

    name: str
    state: str
    maps: int
    maps_done: int
    reduces: int
    reduces_done: int
    seconds: float
    output: str


@register(43)
@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatusReply(Message):
    status: JobStatusView


@register(44)
@dataclass(frozen=True, slots=True, kw_only=True)
class ListJobs(Message):
    pass


@register(45)
@dataclass(frozen=True, slots=True, kw_only=True)
class ListJobsReply(Message):
    jobs: tuple[JobSummary, ...]


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptReport(Record):
    """How one task attempt ended, as its node reports it (resent until the coordinator acknowledges it;
    the coordinator handles each attempt's report once, so a duplicate changes nothing)."""

    attempt: str
    ok: bool
    #: partitions the attempt wrote (a successful map)
    partitions: tuple[int, ...] = ()
    #: (group, name, value) of each counter
    counters: tuple[tuple[str, str, int], ...] = ()
    error: str = ""
    traceback: str = ""
    #: why a failed attempt failed: "" (the user's code or the node: counted against the task and the node),
    #: "store" (dynamr's own store reads or writes were unavailable: retried, not counted), "input_lost"
    #: (an earlier task's committed output is gone: that task runs again), "killed" (on request)
    cause: str = ""
    #: with cause "input_lost": the task, and its committed attempt, whose output could not be read
    lost_task: str = ""
    lost_attempt: str = ""
    #: a failed map of several input files: the one it was reading
    input: SplitRef | None = None
    #: skip mode: the record (as JSON) a failing map attempt was working on, if known
    bad_record: str | None = None
    #: what the attempt printed (stdout and stderr, bounded: see dynamr.mapreduce.taskoutput)
    output: str = ""


#: the failure causes a report may give (see AttemptReport.cause)
REPORT_CAUSES = frozenset({"", "store", "input_lost", "killed"})


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInput(Record):
    """What a map reads: splits of input files ("split": in the store, or ``local``), or the output of
    the previous step (an object in the store at ``key``, or a local ``file`` in embedded mode)."""

    kind: str
    local: bool = False
    #: the byte ranges a map of input files reads, in order: one, or several small files packed together
    splits: tuple[SplitRef, ...] = ()
    key: str = ""
    path: str = ""


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutput(Record):
    """Where a task's final records go: a part file ("store" or "local" ``path``), or the next step's
    input (an "object" at ``key`` in the store, or a local "file" at ``path``)."""

    kind: str
    path: str = ""
    key: str = ""


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class CommitRef(Record):
    """A committed attempt whose output a task reads."""

    task_id: str
    attempt: str
    partitions: tuple[int, ...] = ()


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec(Record):
    """Everything a task process needs to run one attempt. The coordinator fills the job's part; the worker
    adds its node's (seeds, scratch directory, process limits) before handing it to the task process."""

    job: str
    attempt: str
    kind: str  # "map" or "reduce"
    step: int
    source: str
    source_name: str
    #: the job's process group (see JobPlan); empty: the job's own
    process_group: str = ""
    job_class: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    #: the job's sampled partition state, msgpack-encoded (empty: none)
    partition_state: bytes = b""
    chunk_size: int = 4 << 20
    buffer_records: int = 1_000_000
    local_intermediate: str = ""
    input: TaskInput | None = None
    output: TaskOutput | None = None
    #: a map: how many partitions its output has
    num_partitions: int = 1
    #: a reduce: its partition, the job whose maps it reads, and their commits
    partition: int = 0
    map_job: str = ""
    commits: tuple[CommitRef, ...] = ()
    #: a later step's map: the committed attempt whose output it reads
    producer: CommitRef | None = None
    #: skip mode
    track_records: bool = False
    skip_records: tuple[str, ...] = ()
    #: seconds without progress before the worker kills the attempt (0: never)
    progress_timeout: float = 0.0
    # --- the node's part ---
    seeds: tuple[tuple[str, int], ...] = ()
    secret_file: str = ""
    #: the CA file to verify nodes against when the cluster uses TLS ("" for plain TCP)
    tls_ca: str = ""
    scratch_dir: str = ""
    max_tasks: int = 1
    max_rss: int = 512 << 20
    timeout: float = 30.0


@register(46)
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerHeartbeat(Message):
    """A node's worker polls: its free task slots, what it runs, and the attempts that ended."""

    node_id: str
    free_slots: int
    #: ended attempts not yet acknowledged
    reports: tuple[AttemptReport, ...] = ()
    #: every attempt the worker has accepted and not yet reported ended
    running: tuple[str, ...] = ()
    #: for each running attempt, the fraction of its input consumed (-1: not known)
    progress: tuple[float, ...] = ()
    #: random per worker process: a new value means the node restarted and its earlier attempts are gone
    incarnation: str = ""
    #: grows by one with each poll of this incarnation: an older or repeated poll is recognized
    seq: int = 0
    #: seconds the coordinator may keep the poll of an idle worker (free slots, nothing running, nothing to
    #: report) while it has no task for it, answering the moment one is ready (0: answer at once)
    hold: float = 0.0


@register(47)
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerHeartbeatReply(Message):
    #: attempts to start
    assignments: tuple[TaskSpec, ...]
    #: attempts to kill
    kills: tuple[str, ...] = ()
    #: attempts whose reports were handled: stop resending them
    acked: tuple[str, ...] = ()
    #: the poll this answers
    seq: int = 0
    #: tasks may become ready within moments (commits are being written): poll again soon
    soon: bool = False
    #: poll again at once: the coordinator kept this poll, or will keep the next, until it has a task for
    #: the worker (see WorkerHeartbeat.hold); an idle worker's poll so always waits there for its next task
    again: bool = False


@register(48)
@dataclass(frozen=True, slots=True, kw_only=True)
class KillJob(Message):
    """Stop every task of a job and delete its intermediate data; the reply is its status."""

    name: str


@register(49)
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteJob(Message):
    """Forget a job that is not running: its record, its stored source, and the inputs and outputs dynamr
    staged for it (``/_inputs/<name>``, ``/_outputs/<name>``); its name can then be used again."""

    name: str


@register(50)
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteJobReply(Message):
    #: the store paths removed
    removed: tuple[str, ...] = ()


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptLog(Record):
    """What one attempt left: its outcome, the user's traceback of a failure, and what it printed (bounded)."""

    task: str
    attempt: str
    node: str
    ok: bool
    started: float
    ended: float
    error: str = ""
    traceback: str = ""
    output: str = ""


@register(51)
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskLogs(Message):
    """The logs of a job's attempts that failed or printed something; of one task when ``task`` is set (as
    ``dynamr status`` shows it, e.g. ``s0-m3``, or in full, ``<job>/s0-m3``)."""

    name: str
    task: str = ""


@register(52)
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskLogsReply(Message):
    logs: tuple[AttemptLog, ...] = ()
    #: logs left out to keep the reply small (ask for one task to see them)
    more: int = 0


@register(53)
@dataclass(frozen=True, slots=True, kw_only=True)
class WebAddress(Message):
    """Where the coordinator serves its dashboard."""


@register(54)
@dataclass(frozen=True, slots=True, kw_only=True)
class WebAddressReply(Message):
    host: str
    #: 0: no dashboard (the cluster file gives the coordinator no http_port)
    port: int
