"""The coordinator's core after a restart: jobs of an earlier incarnation rebuilt from what was persisted.

The shell (:mod:`dynamr.mapreduce.coordinator`, or the simulator's) reads each stored job and calls, before it
serves: :func:`restore_job` (the job's run and attempts rebuilt; the tasks whose commit records to look up),
:func:`replayed` with the records found (until no task is left to look up), then :func:`after_restore` once
every job is back (cleanups and late sweeps an earlier incarnation had not finished). Any attempt that had
succeeded may have a commit write still landing, so its task's record is treated as uncertain until
looked up or swept.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce import protocol as p
from dynamr.mapreduce.corestate import JobCore, Tombstone
from dynamr.mapreduce.jobrun import ENDED, JobRun, task_of

if TYPE_CHECKING:
    from dynamr.mapreduce.control import CoordinatorCore

log = logging.getLogger(__name__)


def restore_job(core: CoordinatorCore, stored: p.StoredJobView, locate: Any, now: float) -> list[str]:
    """Rebuild a job of an earlier incarnation (before serving). Returns the tasks whose commit records to
    look up (see :func:`replayed`); none for a job that never started."""
    # which commit writes lost their answer is not kept: any attempt that succeeded may have one landing
    uncertain = [(task_of(a), a) for a, _, _, _, ok, _ in stored.attempts if ok]
    if stored.final_status is not None:
        core.keep_status(stored.name, stored.final_status)
        core.tombstones[stored.name] = Tombstone(
            max((s.reducers for s in stored.plan.steps), default=1) or 1, stored.plan.local_intermediate)
        unswept = [a for a, _, _, _, ok, _ in stored.attempts if not ok]
        if stored.attempts:
            core.restored_sweeps.append((stored.name, unswept, uncertain))
        return []
    run = JobRun(stored.name, stored.plan, core.scheduler, locate, wall_offset=core.wall_offset)
    run.restore([(a, n, started - core.wall_offset, None if ended is None else ended - core.wall_offset, ok, err)
                 for a, n, started, ended, ok, err in stored.attempts])
    jc = core.jobs[stored.name] = JobCore(run)
    jc.uncertain.update(uncertain)
    if stored.state == "created":
        return []
    run.start(stored.started - core.wall_offset)
    if stored.ended_status is not None:  # it succeeded; its cleanup may have deleted its commit records
        run.restore_succeeded(stored.ended_status, stored.ended - core.wall_offset)
        core.restored_ends.append(stored.name)
        return []
    core.assign_after = now + core.settings.recovery_grace
    return sorted(run.tasks)


def after_restore(core: CoordinatorCore, now: float) -> list[p.Instruction]:
    """After every job is restored: the cleanup of jobs that had succeeded (again: it is idempotent), and
    the late sweeps that an earlier incarnation had not finished."""
    out: list[p.Instruction] = []
    for name in core.restored_ends:
        out += core.end_job(core.jobs[name], now)
    core.restored_ends.clear()
    for job, attempts, uncertain in core.restored_sweeps:
        out += core.sweep_later(job, attempts, now, uncertain)
    core.restored_sweeps.clear()
    return out


def replayed(core: CoordinatorCore, name: str, found: dict[str, im.Commit | None], stored: p.StoredJobView,
             now: float) -> tuple[list[str], list[p.Instruction]]:
    """Commit records looked up for a restored job (``None``: no record). Returns the tasks to look up next
    (a phase that completed added new ones), and what to do (each round's, to be carried out together)."""
    jc = core.jobs[name]
    run = jc.run
    out: list[p.Instruction] = []
    for task_id, record in found.items():
        if record is not None and not run.started(record.attempt):  # a deleted job's of the same name
            log.warning("job %s: %s's commit record names %s, not its own: deleted", name, task_id, record.attempt)
            out.append(p.DeleteCommit(name, task_id, record.attempt))
            found[task_id] = record = None
        if record is None or task_id in run.commits or task_id in jc.writing:
            continue
        if run.publish_path(task_id):  # its part file may not have been published: the write is done again
            core.scheduler.commit_found(task_id, record.attempt)
            jc.writing[task_id] = record
        else:
            run.committed(record, now)
    todo = [t for t in run.tasks if t not in run.commits and t not in found]
    if todo and any(found.values()):
        return todo, out
    out += [core.write_commit(jc, record) for record in jc.writing.values()]
    if stored.state in ("failed", "killed") and run.state == "running":
        run.state, run.error, run.ended_at = stored.state, stored.error, stored.ended - core.wall_offset
    if run.state in ENDED:
        return [], out + core.end_job(jc, now)
    return [], out
