"""Speculative execution and per-job node exclusion in the scheduler (pure logic, times given)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.mapreduce.scheduler import Assignment, Scheduler


def phase_of(s: Scheduler, count: int, weight: int = 100, job: str = "j") -> None:
    for i in range(count):
        s.add(f"{job}/m{i}", job=job, phase=f"{job}/m", weight=weight)


def run_all(s: Scheduler, nodes: list[str], slots: int, now: float) -> list[Assignment]:
    got: list[Assignment] = []
    for node in nodes:
        got += s.offer(node, slots, now)
    return got


def test_a_stalled_task_gets_one_backup_on_another_node_once_the_phase_has_started_everything() -> None:
    s = Scheduler(speculative_after=0.0)
    phase_of(s, 10)
    first = run_all(s, ["a", "b"], 5, now=0)
    assert len(first) == 10 and not any(x.speculative for x in first)
    for x in first[1:]:  # every task but m0 (on a) succeeds in about 10 s
        s.progress(x.attempt_id, 0.5)
        assert s.succeeded(x.attempt_id, now=10).commit
    straggler = first[0]
    s.progress(straggler.attempt_id, 0.1)  # 10% after 30 s: it would need 300 s, a copy 10 s
    assert s.offer("a", 1, now=30) == []  # never on the node already running it
    (backup,) = s.offer("b", 4, now=30)
    assert backup.task_id == straggler.task_id and backup.speculative and backup.node == "b"
    assert s.offer("b", 4, now=40) == []  # one backup per task
    assert s.succeeded(backup.attempt_id, now=41).commit
    assert s.other_attempts(backup.attempt_id) == {straggler.attempt_id: "a"}  # the loser, to kill
    assert not s.succeeded(straggler.attempt_id, now=42).commit  # a late success of it is not committed


def test_no_backup_when_every_task_runs_at_the_same_pace() -> None:
    s = Scheduler(speculative_after=0.0)
    phase_of(s, 20)
    attempts = run_all(s, ["a", "b"], 10, now=0)
    for x in attempts[:10]:
        assert s.succeeded(x.attempt_id, now=10).commit
    for x in attempts[10:]:
        s.progress(x.attempt_id, 0.9)  # started at the same time, nearly done
    assert s.offer("a", 10, now=11) == []
    assert s.offer("b", 10, now=11) == []


def test_no_backup_while_tasks_of_the_phase_wait_to_start() -> None:
    s = Scheduler(speculative_after=0.0)
    phase_of(s, 20)
    attempts = run_all(s, ["a"], 12, now=0)
    assert s.succeeded(attempts[0].attempt_id, now=1).commit
    s.progress(attempts[1].attempt_id, 0.0)
    got = s.offer("b", 5, now=100)  # 5 of the 8 pending tasks, no backups yet
    assert len(got) == 5 and not any(x.speculative for x in got)
    got = s.offer("b", 20, now=100)  # the last 3, then backups, at most 2 (a tenth of 20 tasks)
    assert [x.speculative for x in got] == [False] * 3 + [True] * 2


def test_a_task_almost_done_is_not_backed_up_even_when_slow() -> None:
    s = Scheduler(speculative_after=0.0)
    phase_of(s, 10)
    attempts = run_all(s, ["a", "b"], 5, now=0)
    for x in attempts[1:]:
        s.succeeded(x.attempt_id, now=10)
    s.progress(attempts[0].attempt_id, 0.97)  # slow (about 31 s in all) but 1 s from the end
    assert s.offer("b", 1, now=30) == []


def test_short_attempts_are_not_judged() -> None:
    s = Scheduler(speculative_after=5.0)
    phase_of(s, 10)
    attempts = run_all(s, ["a", "b"], 5, now=0)
    for x in attempts[1:]:
        s.succeeded(x.attempt_id, now=0.5)
    assert s.offer("b", 1, now=4.9) == []  # ten times slower, but not 5 s old yet
    (backup,) = s.offer("b", 1, now=5.0)
    assert backup.task_id == attempts[0].task_id


def test_reduces_without_progress_are_judged_by_elapsed_time() -> None:
    s = Scheduler(speculative_after=0.0)
    for i in range(10):
        s.add(f"j/r{i}", job="j", phase="j/r")
    attempts = run_all(s, ["a", "b"], 5, now=0)
    for x in attempts[1:]:
        s.succeeded(x.attempt_id, now=5)
    assert s.offer("b", 1, now=8) == []  # 8 s: not yet twice the 5 s a reduce takes
    (backup,) = s.offer("b", 1, now=11)
    assert backup.task_id == attempts[0].task_id and backup.speculative


def test_speeds_are_compared_per_byte_so_a_big_split_is_no_straggler() -> None:
    s = Scheduler(speculative_after=0.0)
    for i in range(10):
        s.add(f"j/m{i}", job="j", phase="j/m", weight=1000 if i == 0 else 100)
    attempts = run_all(s, ["a", "b"], 5, now=0)
    for x in attempts[1:]:
        s.succeeded(x.attempt_id, now=10)  # 10 bytes/s
    s.progress(attempts[0].attempt_id, 0.5)  # the 1000-byte split: half done at 50 s, on pace
    assert s.offer("b", 1, now=50) == []


@settings(max_examples=50, deadline=None)
@given(tasks=st.integers(1, 60), stalled=st.integers(0, 60))
def test_backups_never_exceed_a_tenth_of_the_jobs_tasks(tasks: int, stalled: int) -> None:
    s = Scheduler(speculative_after=0.0)
    phase_of(s, tasks)
    attempts = run_all(s, ["a"], tasks, now=0)
    done = attempts[min(stalled, tasks - 1):]
    for x in done:
        s.succeeded(x.attempt_id, now=1)
    backups = s.offer("b", tasks, now=1000)
    assert len(backups) <= tasks // 10
    assert all(x.speculative for x in backups)


def test_a_node_that_keeps_failing_a_job_gets_no_more_of_its_tasks() -> None:
    s = Scheduler(max_attempts=10, exclude_after=3, speculative=False)
    s.add("j/m0", job="j", phase="j/m")
    s.add("other/m0", job="other", phase="other/m")
    s.heartbeat("good", 0)
    for i in range(3):
        (x,) = [a for a in s.offer("bad", 1, now=i) if a.task_id == "j/m0"] or [None]
        assert x is not None
        assert s.failed(x.attempt_id, "boom").retry
    assert s.excluded("j", "bad")
    got = s.offer("bad", 5, now=5)
    assert [x.task_id for x in got] == ["other/m0"]  # other jobs still run there
    assert [x.task_id for x in s.offer("good", 5, now=5)] == ["j/m0"]


def test_exclusion_never_leaves_a_job_without_any_node() -> None:
    s = Scheduler(max_attempts=10, exclude_after=2, speculative=False)
    s.add("j/m0", job="j", phase="j/m")
    for i in range(2):
        (x,) = s.offer("only", 1, now=i)
        s.failed(x.attempt_id, "boom")
    assert not s.excluded("j", "only")
    assert [x.task_id for x in s.offer("only", 1, now=3)] == ["j/m0"]
