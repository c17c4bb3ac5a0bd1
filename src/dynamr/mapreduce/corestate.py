"""What the coordinator's core keeps, beside its scheduler and jobs' runs: its settings, what it knows of
each node and each job, the finalized jobs it remembers, and the legal moves of a job's last phases.
Plain records; every rule that changes them is in :mod:`dynamr.mapreduce.control`."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynamr.config import StoreSettings
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.jobrun import JobRun

#: a job's life in the core after its JobRun ends: every legal move, in one place
PHASES: frozenset[tuple[str, str]] = frozenset({
    ("active", "ending"),  # it ended: its attempts are being stopped, its commit writes drained
    ("ending", "finalizing"),  # the Finalize instruction is out (exactly once per incarnation)
    ("finalizing", "ending"),  # the cleanup failed: try again later
    ("finalizing", "finalized"),  # done: output marked, intermediate data deleted
})


_DEFAULTS = StoreSettings()


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The core's settings, named for what they do here; defaults and their documentation are those of
    :class:`dynamr.config.StoreSettings` (see :meth:`from_settings`)."""

    max_attempts: int = _DEFAULTS.max_attempts
    #: a node silent this long is dead (its attempts are lost): ``worker_timeout``
    node_timeout: float = _DEFAULTS.worker_timeout
    exclude_after: int = _DEFAULTS.node_exclusion_failures
    speculative: bool = _DEFAULTS.speculative_execution
    slow_factor: float = _DEFAULTS.speculative_slow_factor
    speculative_share: float = _DEFAULTS.speculative_share
    speculative_after: float = _DEFAULTS.speculative_after
    #: no-progress timeout handed to workers with each task
    task_timeout: float = _DEFAULTS.task_timeout
    #: after a restart, no new assignments for this long (nodes first report what they still run)
    recovery_grace: float = max(1.0, 3 * _DEFAULTS.worker_heartbeat)
    #: seconds before a failed commit write or cleanup is tried again
    commit_retry: float = 0.5
    #: how long a job that ended waits for its running attempts to be confirmed stopped
    stop_timeout: float = 2 * _DEFAULTS.worker_timeout
    #: after a job's cleanup, its map attempts that never reported success are swept once more this late
    late_write_grace: float = _DEFAULTS.late_write_grace
    #: finalized jobs whose whole status is kept in memory (the newest); older ones keep a summary
    statuses_kept: int = _DEFAULTS.job_statuses_kept

    @classmethod
    def from_settings(cls, s: StoreSettings) -> CoreSettings:
        return cls(max_attempts=s.max_attempts, node_timeout=s.worker_timeout, exclude_after=s.node_exclusion_failures,
                   speculative=s.speculative_execution, slow_factor=s.speculative_slow_factor,
                   speculative_share=s.speculative_share, speculative_after=s.speculative_after,
                   task_timeout=s.task_timeout, recovery_grace=max(1.0, 3 * s.worker_heartbeat),
                   stop_timeout=2 * s.worker_timeout, late_write_grace=s.late_write_grace,
                   statuses_kept=s.job_statuses_kept)


@dataclass
class NodeView:
    incarnation: str
    seq: int = -1
    #: its task slots (free and busy, as its latest poll told)
    slots: int = 0


@dataclass
class JobCore:
    """What the core keeps about one job beside its :class:`JobRun`."""

    run: JobRun
    phase: str = "active"
    #: attempts still running when the job ended (attempt -> node): finalizing waits for them
    stopping: dict[str, str] = field(default_factory=dict)
    stop_deadline: float = 0.0
    retry_at: float = 0.0
    #: task -> the commit record being written (at most one write in flight per task)
    writing: dict[str, im.Commit] = field(default_factory=dict)
    #: task -> (record, when to write it again) after a failed write
    rewrite: dict[str, tuple[im.Commit, float]] = field(default_factory=dict)
    #: attempts whose report was handled
    reported: set[str] = field(default_factory=set)
    #: (task, attempt) of commit writes that failed or lost their answer: they may land, even after the cleanup
    uncertain: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A finalized job, kept so a late report of one of its attempts can be cleaned up."""

    reducers: int
    local_intermediate: str
