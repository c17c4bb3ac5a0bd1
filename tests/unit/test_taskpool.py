"""The worker's task-process pool as a pure state machine."""

from __future__ import annotations

import pytest

from dynamr.mapreduce.scheduler import IllegalTransition
from dynamr.mapreduce.taskpool import LetGo, ProcessPool, StartNew, Use, WaitForSpare


def test_a_process_serves_one_group_and_is_reused_for_it() -> None:
    pool = ProcessPool(slots=2)
    assert pool.spares_wanted(now=0.0) == 2  # the worker starts: a spare per slot
    pool.started(1, None), pool.started(2, None)
    assert pool.acquire("a", now=1.0) == Use(2)
    assert pool.released(2, keep=True, now=2.0) == []
    assert pool.acquire("a", now=3.0) == Use(2)  # warm: same group
    assert pool.acquire("b", now=3.0) == Use(1)  # another group never gets process 2: the other spare
    assert pool.procs[1].group == "b"
    assert pool.acquire("c", now=3.0) == StartNew()  # nothing ready
    pool.started(3, "c")
    assert pool.procs[3].state == "busy"


def test_spares_start_on_free_slots_once_the_attempts_have_not_changed_for_a_while() -> None:
    pool = ProcessPool(slots=2, spare_after=0.5)
    assert pool.spares_wanted(now=0.0) == 2  # the worker starts: a spare per slot, for the first job
    assert pool.spares_wanted(now=0.0) == 0  # ...which are starting
    pool.started(1, None), pool.started(2, None)
    assert pool.acquire("a", now=1.0) == Use(2)
    assert pool.acquire("a", now=1.0) == Use(1)
    assert pool.spares_wanted(now=9.0) == 0  # both slots busy: a spare would slow the attempts down
    pool.released(2, keep=True, now=10.0)  # a slot frees in a phase's tail: the next phase takes it at once
    assert pool.spares_wanted(now=10.1) == 0
    assert pool.acquire("a", now=10.1) == Use(2)  # (the reduce, on the idle process: no spare was needed)
    pool.released(2, keep=True, now=11.0), pool.released(1, keep=True, now=11.0)  # the job ends
    assert pool.spares_wanted(now=11.2) == 0
    assert pool.spares_wanted(now=11.6) == 2  # quiet for spare_after: spares for the next job
    pool.spare_failed(), pool.spare_failed()
    assert pool.acquire("b", now=12.0) == StartNew()  # no spare came up
    pool.launch_failed()
    assert pool.spares_wanted(now=12.6) == 2


def test_at_most_slots_idle_processes_are_kept_and_idle_ones_expire() -> None:
    pool = ProcessPool(slots=1, idle_seconds=20)
    pool.started(1, "a"), pool.started(2, "a")
    assert pool.released(1, keep=True, now=1.0) == []
    assert pool.released(2, keep=True, now=2.0) == [LetGo(1)]  # the oldest idle goes
    assert pool.tick(now=10.0) == []
    assert pool.tick(now=30.0) == [LetGo(2)]
    assert pool.procs == {}


def test_a_failed_or_retiring_process_is_not_kept_and_a_kill_lets_the_groups_idle_ones_go() -> None:
    pool = ProcessPool(slots=3)
    pool.started(1, "a"), pool.started(2, "a"), pool.started(3, "b")
    assert pool.released(1, keep=False, now=0.0) == [] and 1 not in pool.procs
    pool.released(2, keep=True, now=0.0), pool.released(3, keep=True, now=0.0)
    assert pool.kill_group("a") == [LetGo(2)] and 3 in pool.procs


def test_an_illegal_move_is_a_bug() -> None:
    pool = ProcessPool(slots=1)
    pool.started(1, None)
    with pytest.raises(IllegalTransition):
        pool.released(1, keep=True, now=0.0)  # a spare never ran an attempt


def test_an_attempt_waits_for_a_spare_that_is_starting_instead_of_starting_its_own() -> None:
    pool = ProcessPool(slots=2, spare_after=0.5)
    assert pool.spares_wanted(now=1.0) == 2  # quiet: two spares start for the next job...
    assert pool.acquire("a", now=1.1) == WaitForSpare()  # ...which arrives while they import
    assert pool.acquire("a", now=1.1) == WaitForSpare()
    assert pool.acquire("b", now=1.1) == StartNew()  # both promised: a third attempt starts its own
    assert pool.started(7, None) == "a" and pool.procs[7].state == "busy" and pool.procs[7].group == "a"
    assert pool.spare_failed()  # the other spare did not start: the second attempt must ask again
    assert pool.acquire("a", now=1.2) == StartNew()
    assert pool.waiting == [] and pool.starting == 0


def test_a_spare_that_comes_up_with_nobody_waiting_stays_a_spare() -> None:
    pool = ProcessPool(slots=1)
    assert pool.spares_wanted(now=0.0) == 1
    assert not pool.spare_failed()  # nobody was waiting
    assert pool.spares_wanted(now=1.0) == 1
    assert pool.started(3, None) is None and pool.procs[3].state == "spare"
    assert pool.acquire("a", now=2.0) == Use(3)
