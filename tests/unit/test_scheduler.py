from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.mapreduce.scheduler import MAX_PRIORITY, Scheduler, TaskState


def test_free_slots_take_local_tasks_first_then_oldest() -> None:
    s = Scheduler()
    s.add("m0", preferred={"b"})
    s.add("m1", preferred={"a"})
    s.add("m2", preferred={"b"})
    got = s.offer("a", 2, now=0)
    assert [(x.task_id, x.local) for x in got] == [("m1", True), ("m0", False)]
    assert [x.task_id for x in s.offer("b", 5, now=0)] == ["m2"]


def test_failed_task_returns_with_higher_priority_and_jumps_the_queue() -> None:
    s = Scheduler()
    s.add("m0")
    s.add("m1")
    (first,) = s.offer("a", 1, now=0)
    assert s.failed(first.attempt_id, "boom").retry
    assert s.tasks["m0"].priority == 2
    assert [x.task_id for x in s.offer("a", 1, now=1)] == ["m0"]


def test_a_lost_attempt_may_send_its_task_back_to_wait_before_it_is_handed_out_again() -> None:
    s = Scheduler()
    s.add("m0")
    s.add("m1")
    first, second = s.offer("a", 2, now=0)
    assert s.attempt_lost(first.attempt_id, "the store was unavailable", ready_at=5.0)
    assert s.attempt_lost(second.attempt_id, "lost", ready_at=0.0)
    assert s.has_pending_for("a", 1.0) and s.next_ready(1.0) == 5.0
    assert [x.task_id for x in s.offer("a", 2, now=1.0)] == ["m1"]  # m0 waits, m1 goes at once
    assert not s.has_pending_for("a", 4.9) and s.next_ready(4.9) == 5.0
    assert [x.task_id for x in s.offer("a", 2, now=5.0)] == ["m0"]
    assert s.next_ready(5.0) is None


def test_task_fails_after_max_attempts() -> None:
    s = Scheduler(max_attempts=4)
    s.add("m0")
    for i in range(3):
        (a,) = s.offer("n", 1, now=i)
        assert s.failed(a.attempt_id, f"error {i}").retry
    (a,) = s.offer("n", 1, now=9)
    outcome = s.failed(a.attempt_id, "error 3")
    assert outcome.task_failed and s.tasks["m0"].state is TaskState.FAILED
    assert s.tasks["m0"].failures == [f"error {i}" for i in range(4)]


def test_first_success_commits_and_a_late_duplicate_is_a_loser() -> None:
    s = Scheduler()
    s.add("m0")
    (a,) = s.offer("x", 1, now=0)
    s.node_lost("x")  # x looks dead: the task is re-run elsewhere
    (b,) = s.offer("y", 1, now=1)
    assert s.succeeded(b.attempt_id).commit
    assert not s.succeeded(a.attempt_id).commit  # x was only slow: its late result is ignored
    assert s.tasks["m0"].committing == b.attempt_id and s.tasks["m0"].committed is None
    s.commit_written("m0", b.attempt_id)  # committed only once the record is confirmed written
    assert s.tasks["m0"].committed == b.attempt_id and s.tasks["m0"].state.value == "succeeded"


def test_attempts_lost_with_a_node_do_not_count_as_failures() -> None:
    s = Scheduler(max_attempts=2)
    s.add("m0")
    for i in range(5):
        s.offer(f"n{i}", 1, now=i)
        s.node_lost(f"n{i}")
    assert s.tasks["m0"].state is TaskState.PENDING and s.tasks["m0"].errors == 0


def test_silent_nodes_are_dead_and_their_tasks_requeued() -> None:
    s = Scheduler(node_timeout=3)
    s.add("m0")
    s.add("m1")
    s.offer("x", 1, now=0)
    s.offer("y", 1, now=0)
    s.heartbeat("y", now=2.5)
    assert s.dead_nodes(now=3.5) == {"x": ["m0#1"]}
    assert s.tasks["m0"].state is TaskState.PENDING and s.tasks["m0"].priority == 2
    assert s.tasks["m1"].state is TaskState.RUNNING


def test_waiting_tasks_run_only_once_released() -> None:
    s = Scheduler()
    s.add("r0", runnable=False)
    assert s.offer("n", 4, now=0) == []
    s.release("r0")
    assert [x.task_id for x in s.offer("n", 4, now=0)] == ["r0"]


def test_removing_a_job_reports_attempts_to_kill() -> None:
    s = Scheduler()
    s.add("m0")
    (a,) = s.offer("n", 1, now=0)
    assert s.remove(["m0"]) == {a.attempt_id: "n"}
    assert not s.succeeded(a.attempt_id).commit


events = st.lists(st.tuples(st.sampled_from(["offer", "ok", "fail", "lost"]), st.sampled_from("xyz"),
                            st.integers(0, 3)), max_size=60)


@settings(max_examples=300)
@given(events)
def test_invariants_under_random_events(history: list[tuple[str, str, int]]) -> None:
    s = Scheduler(max_attempts=4)
    for i in range(4):
        s.add(f"t{i}", preferred={"xyz"[i % 3]})
    commits: dict[str, str] = {}
    issued: list[str] = []
    for now, (kind, node, pick) in enumerate(history):
        if kind == "offer":
            for a in s.offer(node, pick, now):
                issued.append(a.attempt_id)
        elif kind == "lost":
            s.node_lost(node)
        elif issued:
            attempt = issued[pick % len(issued)]
            if kind == "ok" and s.succeeded(attempt).commit:
                task = attempt.split("#")[0]
                assert task not in commits, "a task commits at most once"
                commits[task] = attempt
            elif kind == "fail":
                s.failed(attempt, "x")
        for task in s.tasks.values():
            assert MAX_PRIORITY >= task.priority >= 1
            if task.state is TaskState.FAILED:
                assert task.errors >= s.max_attempts
            if task.state is TaskState.RUNNING:
                assert task.running
            if task.state is TaskState.SUCCEEDED:
                assert task.committed == commits[task.task_id]


def test_a_task_s_attempts_are_forgotten_with_it_even_one_found_committed_after_a_restart() -> None:
    s = Scheduler(attempt_prefix="2.")
    s.add("j/m0", job="j")
    s.add("j/m1", job="j")
    s.commit_written("j/m0", "j/m0#7")  # committed by the first incarnation, found in the store
    assert s.reopen("j/m0", "its output was lost")
    (again,) = [a for a in s.offer("n", 2, now=0) if a.task_id == "j/m0"]
    s.succeeded(again.attempt_id, now=1)
    s.commit_written("j/m0", again.attempt_id)
    s.remove(["j/m0", "j/m1"])
    assert not s.knows("j/m0#7") and not s.knows(again.attempt_id)
    assert not s._attempts and not s._running_at and not s._pending and not s._job_tasks
