"""Every message that crosses the wire, as a small frozen dataclass with a stable numeric tag.

A message is encoded as its tag followed by its field values in declaration order (see
:mod:`dynamr.rpc.codec`), so adding a field at the end with a default keeps old peers readable. The
registry :data:`MESSAGE_TYPES` maps tags to classes; servers dispatch on the class through a table.

Store messages come in two groups: the client-facing ones (``Get``, ``Put``, ``Delete``, ``ClusterInfo``,
``NodeStatus``), which any node coordinates, and the replica-level ones a coordinator sends to the nodes
holding a key (``ReplicaRead``, ``ReplicaWrite``, ``ReplicaPurge``). Replica states travel as opaque bytes
(an encoded sibling set, see :mod:`dynamr.store.versions`), so this module stays free of store logic.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

M = TypeVar("M", bound="Message")


class Record:
    """Base of records carried inside messages (a field typed ``R`` or ``tuple[R, ...]`` for a record class
    ``R``): encoded as the array of their field values, like a message body. Declared with :func:`record`."""

    FIELDS: ClassVar[tuple[str, ...]] = ()
    #: field name -> (record class, whether the field is a tuple of them), for records nested in this one
    NESTED: ClassVar[dict[str, tuple[type[Record], bool]]] = {}


class Message:
    """Base of all wire messages. Subclasses are registered with :func:`register`."""

    TAG: ClassVar[int] = -1
    FIELDS: ClassVar[tuple[str, ...]] = ()
    NESTED: ClassVar[dict[str, tuple[type[Record], bool]]] = {}


MESSAGE_TYPES: dict[int, type[Message]] = {}
R = TypeVar("R", bound=Record)


def _nested(cls: type) -> dict[str, tuple[type[Record], bool]]:
    """The fields of a dataclass that hold records (``R`` or ``tuple[R, ...]``)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[type[Record], bool]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
            hint = next(a for a in args if a is not type(None))  # an optional record: None stays None
            args = typing.get_args(hint)
        if isinstance(hint, type) and issubclass(hint, Record):
            out[f.name] = (hint, False)
        elif (typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis
              and isinstance(args[0], type) and issubclass(args[0], Record)):
            out[f.name] = (args[0], True)
    return out


def record(cls: type[R]) -> type[R]:
    """Class decorator (outside ``@dataclass``): make a dataclass a :class:`Record`."""
    cls.FIELDS = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    cls.NESTED = _nested(cls)
    return cls


def register(tag: int) -> Callable[[type[M]], type[M]]:
    """Class decorator (outside ``@dataclass``): register a message class under a stable ``tag``."""

    def wrap(cls: type[M]) -> type[M]:
        if tag in MESSAGE_TYPES:
            raise ValueError(f"message tag {tag} used twice ({MESSAGE_TYPES[tag].__name__}, {cls.__name__})")
        cls.TAG = tag
        cls.FIELDS = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        cls.NESTED = _nested(cls)
        MESSAGE_TYPES[tag] = cls
        return cls

    return wrap


# --- liveness and cluster information -----------------------------------------------------------


@register(1)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    sender: str = ""


@register(2)
@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    node_id: str
    epoch: str


@register(3)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInfo(Message):
    pass


@register(4)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInfoReply(Message):
    #: (node_id, host, port) of every member
    nodes: tuple[tuple[str, str, int], ...]
    n: int
    r: int
    w: int
    vnodes: int
    #: ids of the members the answering node currently believes down
    down: tuple[str, ...]
    max_key_bytes: int
    max_value_bytes: int
    #: "host:port" of the MapReduce coordinator, empty when there is none
    coordinator: str = ""


@register(5)
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus(Message):
    pass


@register(6)
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatusReply(Message):
    node_id: str
    epoch: str
    keys: int
    hints: int
    tombstones: int
    up: tuple[str, ...]
    down: tuple[str, ...]
    chunks: int = 0


@register(7)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Message):
    pass


# --- client-facing key-value operations ----------------------------------------------------------
# A zero quorum field or timeout means "the cluster default".


@register(10)
@dataclass(frozen=True, slots=True, kw_only=True)
class Get(Message):
    key: bytes
    n: int = 0
    r: int = 0
    timeout: float = 0.0


@register(11)
@dataclass(frozen=True, slots=True, kw_only=True)
class GetReply(Message):
    #: live sibling values (empty when the key is absent or deleted)
    values: tuple[bytes, ...]
    #: causal context to pass back with the next write of this key
    context: bytes


@register(12)
@dataclass(frozen=True, slots=True, kw_only=True)
class Put(Message):
    key: bytes
    value: bytes
    context: bytes = b""
    n: int = 0
    w: int = 0
    timeout: float = 0.0


@register(13)
@dataclass(frozen=True, slots=True, kw_only=True)
class Delete(Message):
    key: bytes
    context: bytes = b""
    n: int = 0
    w: int = 0
    timeout: float = 0.0


@register(14)
@dataclass(frozen=True, slots=True, kw_only=True)
class PutReply(Message):
    #: causal context of the version just written
    context: bytes


# --- replica-level operations, sent by a coordinating node ----------------------------------------


@register(20)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaRead(Message):
    key: bytes


@register(21)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaState(Message):
    #: encoded sibling set, empty bytes when the replica has nothing for the key
    state: bytes


@register(22)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaWrite(Message):
    key: bytes
    state: bytes
    #: id of the node this write is really meant for, when the receiver only keeps it as a hint
    hint_for: str = ""


@register(23)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaPurge(Message):
    """Remove ``key`` if its local state is exactly the tombstone-only ``state`` given."""

    key: bytes
    state: bytes


@register(24)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaPurgeReply(Message):
    purged: bool


@register(25)
@dataclass(frozen=True, slots=True, kw_only=True)
class ListKeys(Message):
    """Live keys (not only deleted) that this node's own replica holds under ``prefix``, at most ``limit``."""

    prefix: bytes
    limit: int = 10000


@register(26)
@dataclass(frozen=True, slots=True, kw_only=True)
class ListKeysReply(Message):
    keys: tuple[bytes, ...]
    #: True when there were more than ``limit``
    truncated: bool = False


# --- chunks: immutable, content-addressed blobs (see dynamr.store.chunks) ------------------------------


@register(30)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkPut(Message):
    """Client-facing: store a chunk on its replicas (the receiving node coordinates)."""

    chunk_id: bytes
    data: bytes
    n: int = 0
    w: int = 0
    timeout: float = 0.0


@register(31)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkStore(Message):
    """Replica-level: keep this chunk (as a hint for ``hint_for`` when set)."""

    chunk_id: bytes
    data: bytes
    hint_for: str = ""


@register(32)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRead(Message):
    """Replica-level: bytes [offset, offset+length) of a chunk (length -1: to the end), verified first."""

    chunk_id: bytes
    offset: int = 0
    length: int = -1


@register(33)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkData(Message):
    data: bytes
    #: size of the whole chunk
    size: int


@register(34)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkHas(Message):
    chunk_ids: tuple[bytes, ...]


@register(35)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkHasReply(Message):
    chunk_ids: tuple[bytes, ...]


@register(36)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkSweep(Message):
    """Delete local chunks not in ``keep`` that were stored more than ``older_than`` seconds ago."""

    keep: tuple[bytes, ...]
    older_than: float


@register(37)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkSweepReply(Message):
    deleted: int
    kept: int


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
    :func:`dynamr.mapreduce.jobrun.check_plan`)."""

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
    #: skip mode: the record (as JSON) a failing map attempt was working on, if known
    bad_record: str | None = None


#: the failure causes a report may give (see AttemptReport.cause)
REPORT_CAUSES = frozenset({"", "store", "input_lost", "killed"})


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInput(Record):
    """What a map reads: a split of an input file ("split": in the store, or ``local``), or the output of
    the previous step (an object in the store at ``key``, or a local ``file`` in embedded mode)."""

    kind: str
    local: bool = False
    split: SplitRef | None = None
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


@register(48)
@dataclass(frozen=True, slots=True, kw_only=True)
class KillJob(Message):
    """Stop every task of a job and delete its intermediate data; the reply is its status."""

    name: str
