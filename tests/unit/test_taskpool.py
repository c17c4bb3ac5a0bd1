"""The worker's task-process pool as a pure state machine."""

from __future__ import annotations

import pytest

from dynamr.mapreduce.scheduler import IllegalTransition
from dynamr.mapreduce.taskpool import LetGo, ProcessPool, StartNew, Use


def test_a_process_serves_one_job_and_is_reused_for_it() -> None:
    pool = ProcessPool(slots=2)
    action, spares = pool.acquire("a")
    assert action == StartNew() and spares == 2  # nothing ready: start one now, and two spares behind it
    pool.started(1, "a")
    pool.started(2, None), pool.started(3, None)
    assert pool.released(1, keep=True, now=0.0) == []
    assert pool.acquire("a") == (Use(1), 0)  # warm: same job
    assert pool.acquire("b")[0] == Use(3)  # another job never gets process 1: a spare
    assert pool.procs[3].job == "b"


def test_spares_are_refilled_but_never_beyond_the_slots() -> None:
    pool = ProcessPool(slots=2)
    pool.starting = 0
    pool.started(1, None), pool.started(2, None)
    assert pool.acquire("a") == (Use(2), 1)  # one spare taken: one more asked for
    assert pool.acquire("a") == (Use(1), 1)
    assert pool.acquire("a") == (StartNew(), 0)  # two spares are already starting
    pool.spare_failed()
    assert pool.acquire("b") == (StartNew(), 1)


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
