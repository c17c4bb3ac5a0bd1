"""The worker's task-process pool as a pure state machine."""

from __future__ import annotations

import pytest

from dynamr.mapreduce.scheduler import IllegalTransition
from dynamr.mapreduce.taskpool import LetGo, ProcessPool, StartNew, Use


def test_a_process_serves_one_job_and_is_reused_for_it() -> None:
    pool = ProcessPool(slots=2)
    action, spares = pool.acquire("a")
    assert action == StartNew() and spares == 1  # nothing ready: start one now, and a spare for the free slot
    pool.started(1, "a")
    pool.started(2, None)
    assert pool.released(1, keep=True, now=0.0) == []
    assert pool.acquire("a") == (Use(1), 0)  # warm: same job
    assert pool.acquire("b")[0] == Use(2)  # another job never gets process 1: a spare
    assert pool.procs[2].job == "b"


def test_spares_start_when_the_worker_starts_and_only_on_slots_no_attempt_needs() -> None:
    pool = ProcessPool(slots=2)
    assert pool.spares_wanted() == 2  # the worker starts: a spare per slot, for the first job
    assert pool.spares_wanted() == 0  # ...which are starting
    pool.started(1, None), pool.started(2, None)
    assert pool.acquire("a") == (Use(2), 0)  # one slot busy, one spare ready: nothing to start
    assert pool.acquire("a") == (Use(1), 0)  # both slots busy: a spare would slow them down
    assert pool.spares_wanted() == 0
    pool.released(2, keep=True, now=0.0)  # a slot frees (a phase's tail): one spare for the next job
    assert pool.spares_wanted() == 1
    pool.spare_failed()
    assert pool.acquire("b") == (StartNew(), 0)  # both slots busy again
    pool.launch_failed()
    assert pool.spares_wanted() == 1


def test_at_most_slots_idle_processes_are_kept_and_idle_ones_expire() -> None:
    pool = ProcessPool(slots=1, idle_seconds=20)
    pool.started(1, "a"), pool.started(2, "a")
    assert pool.released(1, keep=True, now=1.0) == []
    assert pool.released(2, keep=True, now=2.0) == [LetGo(1)]  # the oldest idle goes
    assert pool.tick(now=10.0) == []
    assert pool.tick(now=30.0) == [LetGo(2)]
    assert pool.procs == {}


def test_a_failed_or_retiring_process_is_not_kept_and_a_kill_lets_the_jobs_idle_ones_go() -> None:
    pool = ProcessPool(slots=3)
    pool.started(1, "a"), pool.started(2, "a"), pool.started(3, "b")
    assert pool.released(1, keep=False, now=0.0) == [] and 1 not in pool.procs
    pool.released(2, keep=True, now=0.0), pool.released(3, keep=True, now=0.0)
    assert pool.kill_job("a") == [LetGo(2)] and 3 in pool.procs


def test_an_illegal_move_is_a_bug() -> None:
    pool = ProcessPool(slots=1)
    pool.started(1, None)
    with pytest.raises(IllegalTransition):
        pool.released(1, keep=True, now=0.0)  # a spare never ran an attempt
