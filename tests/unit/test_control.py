"""The coordinator's core driven directly: failure attribution, plan checks, acknowledgements, refusals."""

from __future__ import annotations

import dataclasses
from typing import Any

from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce import protocol as p
from dynamr.mapreduce import restart
from dynamr.mapreduce.control import CoordinatorCore
from dynamr.mapreduce.corestate import CoreSettings
from dynamr.mapreduce.jobrun import JobPlan, JobRun, StepPlan, task_of
from dynamr.mapreduce.scheduler import Scheduler
from dynamr.rpc.messages import AttemptReport, TaskSpec


def plan(**changes: Any) -> JobPlan:
    base = JobPlan(source="/_jobs/j/1/j.py", source_name="j.py", inputs=(("/in/a", 100),), output="/out",
                   steps=(StepPlan(map_only=True, reducers=0),), split_size=100)
    return dataclasses.replace(base, **changes)


class Driver:
    """One node polling a core: each step reports how the previous assignment ended."""

    def __init__(self, core: CoordinatorCore, node: str = "n1") -> None:
        self.core = core
        self.node = node
        self.seq = 0
        self.now = 0.0
        self.assigned_at: list[float] = []

    def poll(self, running: tuple[str, ...] = (), reports: tuple[AttemptReport, ...] = ()) -> p.ReplyToWorker:
        self.seq += 1
        self.now += 0.5
        out = self.core.handle(p.WorkerPolled(self.node, "inc", self.seq, 2, running, (), reports), self.now)
        reply = next(i for i in out if isinstance(i, p.ReplyToWorker))
        while out:  # the store writes every commit record, and cleans up, at once
            ins = out.pop(0)
            if isinstance(ins, p.WriteCommit):
                out += self.core.handle(p.CommitWritten(ins.job, ins.record, ins.record), self.now)
            elif isinstance(ins, p.Finalize):
                out += self.core.handle(p.FinalizeDone(ins.job), self.now)
        return reply


def fail_then_succeed(core: CoordinatorCore, failures: int, cause: str) -> Driver:
    """Run job j's one task: its first ``failures`` attempts fail with ``cause``, then one succeeds. The
    driver polls every half second; ``drive.assigned_at`` holds when each attempt was handed out."""
    core.handle(p.JobSubmitted("j", plan()), 0.0)
    drive = Driver(core)
    reply = drive.poll()
    drive.assigned_at = [drive.now]
    for _ in range(failures):
        if "j" not in core.jobs:
            break
        (spec,) = reply.assignments
        reply = drive.poll(reports=(AttemptReport(attempt=spec.attempt, ok=False, cause=cause,
                                                  error="QuorumError: 1 of 2 replicas answered"),))
        while "j" in core.jobs and not reply.assignments and drive.now < 1000:
            reply = drive.poll()
        drive.assigned_at.append(drive.now)
    if "j" in core.jobs and reply.assignments:
        (spec,) = reply.assignments
        drive.poll(reports=(AttemptReport(attempt=spec.attempt, ok=True, partitions=(0,)),))
    return drive


def test_store_outages_count_against_neither_the_task_nor_the_node() -> None:
    core = CoordinatorCore(CoreSettings(max_attempts=4, exclude_after=3))
    fail_then_succeed(core, 10, "store")
    assert core.finished["j"].state == "succeeded"
    assert core.finished["j"].excluded_nodes == ()


def test_a_task_backs_off_while_the_store_is_unavailable_to_it_and_runs_again_when_it_is_back() -> None:
    core = CoordinatorCore(CoreSettings(max_attempts=4))
    drive = fail_then_succeed(core, 8, "store")
    assert core.finished["j"].state == "succeeded"
    gaps = [b - a for a, b in zip(drive.assigned_at, drive.assigned_at[1:], strict=False)]
    # without a back-off the next attempt would come with the poll that reports the failure (half a second
    # later, as for user code's failures below); it waits 0.25 s, 0.5 s, 1 s, 2 s, then 4 s each time from
    # that poll, and goes with the first poll after that: eight failures span 24 s rather than 4
    assert gaps == [1.0, 1.0, 1.5, 2.5, 4.5, 4.5, 4.5, 4.5], gaps


def test_user_code_failures_do_not_back_off() -> None:
    core = CoordinatorCore(CoreSettings(max_attempts=4))
    drive = fail_then_succeed(core, 3, "")
    assert core.finished["j"].state == "succeeded"
    assert [b - a for a, b in zip(drive.assigned_at, drive.assigned_at[1:], strict=False)] == [0.5, 0.5, 0.5]


def test_user_code_failures_count() -> None:
    core = CoordinatorCore(CoreSettings(max_attempts=4))
    fail_then_succeed(core, 4, "")
    status = core.finished["j"]
    assert status.state == "failed" and "QuorumError" in status.error.error


def test_a_store_that_never_comes_back_fails_the_job_with_advice() -> None:
    core = CoordinatorCore(CoreSettings(max_attempts=2))
    fail_then_succeed(core, 50, "store")
    status = core.finished["j"]
    assert status.state == "failed"
    assert "store was unavailable to task j/s0-m0 in 10 attempts over 28 s" in status.error.error
    assert "dynamr cluster status" in status.error.error


def test_reports_are_acknowledged_and_a_repeat_is_acknowledged_again_without_effect() -> None:
    core = CoordinatorCore()
    core.handle(p.JobSubmitted("j", plan(split_size=50)), 0.0)
    drive = Driver(core)
    first, second = drive.poll().assignments
    done = AttemptReport(attempt=first.attempt, ok=True, partitions=(0,), counters=(("g", "n", 5),))
    assert drive.poll(running=(second.attempt,), reports=(done,)).acked == (first.attempt,)
    assert drive.poll(running=(second.attempt,), reports=(done,)).acked == (first.attempt,)
    assert core.jobs["j"].run.counters == {("g", "n"): 5}


def test_a_stale_poll_assigns_nothing() -> None:
    core = CoordinatorCore()
    core.handle(p.JobSubmitted("j", plan()), 0.0)
    out = core.handle(p.WorkerPolled("n1", "inc", 5, 2), 1.0)
    assert next(i for i in out if isinstance(i, p.ReplyToWorker)).assignments
    out = core.handle(p.WorkerPolled("n1", "inc", 4, 2), 1.1)  # older than the last: a duplicate or late one
    assert next(i for i in out if isinstance(i, p.ReplyToWorker)).assignments == ()


def test_malformed_plans_are_refused_with_what_to_fix() -> None:
    core = CoordinatorCore()
    for bad, words in ((plan(split_size=0), "split size must be a positive whole number"),
                       (plan(steps=()), "the job has no steps"),
                       (plan(steps=(StepPlan(map_only=False, reducers=0),)), "use -r 1 or more"),
                       (plan(input_format="xml"), "unknown input format"),
                       (plan(process_group="g" * 101), "process group must be a name of at most 100"),
                       (plan(process_group=7), "process group must be a name")):
        (refused,) = core.handle(p.JobSubmitted("j", bad), 0.0)
        assert isinstance(refused, p.Refused) and words in refused.message, refused
    assert not core.jobs


def test_a_job_is_forgotten_only_when_it_is_not_running_and_its_name_is_free_again() -> None:
    core = CoordinatorCore(CoreSettings(max_attempts=4))
    core.handle(p.JobSubmitted("j", plan()), 0.0)
    drive = Driver(core)
    (spec,) = drive.poll().assignments
    refused = core.handle(p.ForgetRequested("j"), drive.now)
    assert isinstance(refused[0], p.Refused) and "kill it first" in refused[0].message
    drive.poll(reports=(AttemptReport(attempt=spec.attempt, ok=True, partitions=(0,)),))
    assert core.finished["j"].state == "succeeded"
    assert core.handle(p.ForgetRequested("j"), drive.now) == [p.PersistForgotten("j")]
    assert core.state_of("j") == "unknown"
    unknown = core.handle(p.ForgetRequested("j"), drive.now)
    assert isinstance(unknown[0], p.Refused) and "no job named 'j'" in unknown[0].message
    assert not any(isinstance(i, p.Refused) for i in core.handle(p.JobSubmitted("j", plan()), drive.now))
    created = core.handle(p.JobSubmitted("k", plan(), run=False), drive.now)
    assert not any(isinstance(i, p.Refused) for i in created)
    assert core.handle(p.ForgetRequested("k"), drive.now) == [p.PersistForgotten("k")], "never run: forgotten"


def test_a_worker_with_a_free_slot_hears_that_a_commit_is_in_flight_and_polls_again_soon() -> None:
    """The last map's commit makes the reduces ready: the poll that reported it is told so, and the worker
    asks again in moments instead of a heartbeat later (but not in an endless loop)."""
    from dynamr.mapreduce.workerstate import QUICK_POLLS, SOON, WorkerState

    core = CoordinatorCore()
    core.handle(p.JobSubmitted("j", plan(steps=(StepPlan(map_only=False, reducers=1),))), 0.0)
    (spec,) = next(i for i in core.handle(p.WorkerPolled("n1", "inc", 1, 2), 1.0)
                   if isinstance(i, p.ReplyToWorker)).assignments
    assert not next(i for i in core.handle(p.WorkerPolled("n1", "inc", 2, 1, (spec.attempt,)), 1.5)
                    if isinstance(i, p.ReplyToWorker)).soon  # nothing in flight
    done = AttemptReport(attempt=spec.attempt, ok=True, partitions=(0,))
    out = core.handle(p.WorkerPolled("n1", "inc", 3, 2, (), (), (done,)), 2.0)
    reply = next(i for i in out if isinstance(i, p.ReplyToWorker))
    assert reply.assignments == () and reply.soon  # the reduce waits for the commit being written
    (write,) = [i for i in out if isinstance(i, p.WriteCommit)]
    core.handle(p.CommitWritten(write.job, write.record, write.record), 2.01)
    reply = next(i for i in core.handle(p.WorkerPolled("n1", "inc", 4, 2), 2.03) if isinstance(i, p.ReplyToWorker))
    assert [s.kind for s in reply.assignments] == ["reduce"] and not reply.soon

    worker = WorkerState("n1", "inc", 2)
    waits = []
    for _ in range(QUICK_POLLS + 2):
        worker.replied(worker.poll().seq, (), (), (), soon=True)
        waits.append(worker.next_poll(0.5))
    assert waits == [SOON] * QUICK_POLLS + [0.5, 0.5]  # a commit slow to write: back to heartbeats
    worker.replied(worker.poll().seq, (), (), ())
    assert worker.next_poll(0.5) == 0.5


def test_a_worker_whose_slots_are_all_busy_polls_less_often() -> None:
    from dynamr.mapreduce.workerstate import BUSY, WorkerState
    from dynamr.rpc.messages import TaskSpec

    worker = WorkerState("n1", "inc", 2)
    specs = tuple(TaskSpec(job="j", attempt=f"j/s0-m{i}#1", kind="map", step=0, source="s", source_name="s.py")
                  for i in range(2))
    worker.replied(worker.poll().seq, (), (), ())
    assert worker.next_poll(0.1) == 0.1  # free slots: quick to take work
    worker.replied(worker.poll().seq, specs[:1], (), ())
    assert worker.next_poll(0.1) == 0.1
    worker.replied(worker.poll().seq, specs[1:], (), ())
    assert worker.next_poll(0.1) == BUSY  # nothing could be taken: the poll only says it lives
    assert worker.next_poll(2.0) == 2.0  # (never more often than asked)
    worker.ended(AttemptReport(attempt=specs[0].attempt, ok=True))
    assert worker.next_poll(0.1) == 0.1  # a report to send and a free slot


def test_an_idle_worker_s_poll_may_be_held_until_a_task_is_ready_and_only_then() -> None:
    """The core says when an idle worker's poll would get nothing (the shell may keep it): not once a task
    it could take is pending, nor while its poll has something to settle."""
    core = CoordinatorCore(CoreSettings(node_timeout=3.0))
    assert not core.may_hold("n1", "inc", 0.0)  # a node not heard of yet: its first poll registers it
    core.handle(p.WorkerPolled("n1", "inc", 1, 2), 0.0)
    assert core.may_hold("n1", "inc", 0.1)  # nothing to do
    assert not core.may_hold("n1", "restarted", 0.1)  # a new incarnation: the old one's attempts are lost
    core.handle(p.JobSubmitted("j", plan()), 0.2)
    assert not core.may_hold("n1", "inc", 0.3)  # a task waits for it
    (spec,) = next(i for i in core.handle(p.WorkerPolled("n1", "inc", 2, 2), 0.3)
                   if isinstance(i, p.ReplyToWorker)).assignments
    assert not core.may_hold("n1", "inc", 0.4)  # its assignment is not confirmed yet
    core.handle(p.WorkerPolled("n1", "inc", 3, 1, (spec.attempt,)), 0.5)
    assert core.may_hold("n2", "x", 0.5) is False and not core.may_hold("n1", "inc", 0.6)  # it runs one
    assert core.hold_for(0.5) == 0.5 and core.hold_for(10.0) == 1.0 and core.hold_for(-1.0) == 0.0


def test_a_worker_polls_again_at_once_after_an_again_reply_that_started_nothing() -> None:
    from dynamr.mapreduce.workerstate import RETRY, WorkerState
    from dynamr.rpc.messages import TaskSpec

    worker = WorkerState("n1", "inc", 1)
    assert worker.next_poll(20.0) == 0.0  # the first poll goes at once: it makes the worker known
    failed = worker.poll(hold=0.5)
    worker.poll_failed()
    assert worker.next_poll(20.0) == RETRY  # no answer: a long heartbeat does not keep it away long
    assert worker.next_poll(0.5) == 0.5
    worker.replied(failed.seq, (), (), ())  # (a late reply to an abandoned poll changes nothing)
    assert worker.next_poll(20.0) == RETRY
    idle = worker.poll(hold=0.5)
    assert idle.hold == 0.5  # idle: the coordinator may keep it
    worker.replied(idle.seq, (), (), (), again=True)
    assert worker.next_poll(0.5) == 0.0  # the next poll waits at the coordinator, not here
    not_kept = worker.poll(hold=0.5)
    assert worker.next_poll(0.5) == 0.5  # (never while a poll is in flight)
    worker.replied(not_kept.seq, (), (), ())
    assert worker.next_poll(0.5) == 0.5  # answered at once with nothing: a heartbeat later, no busy loop
    spec = TaskSpec(job="j", attempt="j/s0-m0#1", kind="map", step=0, source="s", source_name="s.py")
    kept = worker.poll(hold=0.5)
    worker.replied(kept.seq, (spec,), (), (), again=True)
    assert worker.next_poll(0.5) == 0.5 and worker.poll(hold=0.5).hold == 0.0  # busy: answered at once


def test_the_final_status_shows_the_attempts_stopped_after_the_job_ended() -> None:
    core = CoordinatorCore(CoreSettings(max_attempts=1))
    core.handle(p.JobSubmitted("j", plan(split_size=50)), 0.0)
    drive = Driver(core)
    first, second = drive.poll().assignments
    drive.poll(running=(second.attempt,), reports=(AttemptReport(attempt=first.attempt, ok=False,
                                                                 error="ValueError: bad line"),))
    assert core.jobs["j"].phase == "ending" and "j" not in core.finished  # the second attempt is being stopped
    killed = AttemptReport(attempt=second.attempt, ok=False, cause="killed",
                           error="killed at the coordinator's request")
    drive.poll(reports=(killed,))
    status = core.finished["j"]
    assert status.state == "failed"
    assert {(a.attempt, a.ok, a.error) for a in status.attempts} == {
        (first.attempt, False, "ValueError: bad line"), (second.attempt, False, "killed at the coordinator's request")}


def test_an_attempt_not_stopped_in_time_shows_in_the_final_status_as_still_running() -> None:
    core = CoordinatorCore(CoreSettings(max_attempts=1, stop_timeout=5.0))
    core.handle(p.JobSubmitted("j", plan(split_size=50)), 0.0)
    drive = Driver(core)
    first, second = drive.poll().assignments
    drive.poll(running=(second.attempt,), reports=(AttemptReport(attempt=first.attempt, ok=False, error="bad"),))
    while "j" not in core.finished:
        drive.poll(running=(second.attempt,))
        assert drive.now < 10, "the job is cleaned up once its stop timeout has passed"
    (late,) = [a for a in core.finished["j"].attempts if a.attempt == second.attempt]
    assert not late.ok and "still running when the job was cleaned up" in late.error


def test_only_the_newest_final_statuses_are_kept_whole_and_the_older_as_summaries() -> None:
    core = CoordinatorCore(CoreSettings(statuses_kept=2))
    drive = Driver(core)
    for name in ("a", "b", "c"):
        core.handle(p.JobSubmitted(name, plan()), drive.now)
        (spec,) = drive.poll().assignments
        drive.poll(reports=(AttemptReport(attempt=spec.attempt, ok=True, partitions=(0,)),))
    assert list(core.finished) == ["b", "c"] and list(core.older) == ["a"]
    assert core.older["a"].state == "succeeded" and core.older["a"].maps_done == 1
    assert core.state_of("a") == "succeeded"
    refused = core.handle(p.JobSubmitted("a", plan()), drive.now)
    assert isinstance(refused[0], p.Refused) and "already exists" in refused[0].message
    assert core.handle(p.ForgetRequested("a"), drive.now) == [p.PersistForgotten("a")]
    assert core.state_of("a") == "unknown" and not core.older


def test_a_straggler_of_a_deleted_job_is_not_taken_for_an_attempt_of_a_new_job_of_the_same_name() -> None:
    def ok(spec: TaskSpec) -> AttemptReport:
        return AttemptReport(attempt=spec.attempt, ok=True, partitions=(0,))

    core = CoordinatorCore(CoreSettings(node_timeout=3.0))
    core.handle(p.JobSubmitted("a", plan(split_size=50)), 0.0)
    n1, n2 = Driver(core, "n1"), Driver(core, "n2")
    first, second = n1.poll().assignments
    n1.poll(running=(second.attempt,), reports=(ok(first),))
    n2.now = n1.now
    while "a" in core.jobs:  # n1 goes silent: written off, its task runs again on n2, and the job ends
        core.handle(p.Tick(), n2.now)
        for spec in n2.poll().assignments:
            n2.poll(reports=(ok(spec),))
        assert n2.now < 60, "the job ends without n1"
    _swept(core, "a", n2.now)
    assert core.handle(p.ForgetRequested("a"), n2.now) == [p.PersistForgotten("a")]
    core.handle(p.JobSubmitted("a", plan(split_size=50)), n2.now)  # a new job under the old name
    n1.now = n2.now
    n1.poll(running=(second.attempt,))  # n1 is back, still running the old job's attempt...
    n1.poll(reports=(ok(second),))  # ...which then succeeds
    assert not core.jobs["a"].run.commits, "the old job's output was taken for the new job's"


def _swept(core: CoordinatorCore, name: str, now: float) -> float:
    """Run the job's late sweep, every delete confirmed; returns the time after."""
    now += core.settings.late_write_grace + 1.0
    for ins in core.handle(p.Tick(), now):
        if isinstance(ins, p.DeleteOutputs):
            core.handle(p.OutputsDeleted(name, ins.attempt), now)
        elif isinstance(ins, p.DeleteCommit):
            core.handle(p.OutputsDeleted(name, p.commit_garbage(ins.task, ins.attempt)), now)
    assert name not in core.sweeps
    return now


def test_a_job_is_deleted_only_once_its_late_sweep_is_done() -> None:
    """Until then a write of one of its attempts may still land, and only its sweep (resumed by a restart
    from the job's record) deletes it: forgotten earlier, a restart would leave it, and the next job of the
    same name could take a commit record of it for its own."""
    core = CoordinatorCore(CoreSettings(late_write_grace=5.0))
    core.handle(p.JobSubmitted("a", plan(steps=(StepPlan(map_only=False, reducers=1),))), 0.0)
    drive = Driver(core)
    (spec,) = drive.poll().assignments
    (spec,) = drive.poll(reports=(AttemptReport(attempt=spec.attempt, ok=False, error="boom"),)).assignments
    drive.poll(reports=(AttemptReport(attempt=spec.attempt, ok=True, partitions=(0,)),))
    (reduce,) = drive.poll().assignments  # once the map's commit record is written
    drive.poll(reports=(AttemptReport(attempt=reduce.attempt, ok=True, partitions=(0,)),))
    assert core.finished["a"].state == "succeeded" and core.sweeps["a"]  # the failed map's outputs, later
    (refused,) = core.handle(p.ForgetRequested("a"), drive.now)
    assert isinstance(refused, p.Refused) and refused.busy
    assert "writes of its attempts may still land" in refused.message
    late = [i for i in core.handle(p.Tick(), drive.now + 6.0) if isinstance(i, p.DeleteOutputs)]
    assert [i.attempt for i in late] == [f"{spec.attempt.rsplit('#', 1)[0]}#1"]
    assert core.handle(p.OutputsDeleted("a", late[0].attempt), drive.now + 6.0) == [p.PersistSwept("a")]
    assert core.handle(p.ForgetRequested("a"), drive.now + 6.0) == [p.PersistForgotten("a")]


def test_a_restarted_coordinator_ignores_and_deletes_a_commit_record_of_an_attempt_its_job_never_started() -> None:
    """A record the job of the same name before it left (written after that job's sweep): not a commit."""
    core = CoordinatorCore()
    core.handle(p.JobSubmitted("a", plan(split_size=50)), 0.0)
    drive = Driver(core)
    first, second = drive.poll().assignments
    stored = p.StoredJobView("a", plan(split_size=50), "running", 0.0, 0.0, None, None,
                             ((first.attempt, "n1", 0.0, None, None, ""), (second.attempt, "n1", 0.0, None, None, "")))
    restarted = CoordinatorCore(incarnation=2)
    todo = restart.restore_job(restarted, stored, None, 1.0)
    foreign = im.Commit(task_of(first.attempt), task_of(first.attempt) + "#0.7", (0,))
    found: dict[str, im.Commit | None] = {t: None for t in todo}
    found[foreign.task_id] = foreign
    todo, out = restart.replayed(restarted, "a", found, stored, 1.0)
    assert p.DeleteCommit("a", foreign.task_id, foreign.attempt) in out
    assert foreign.task_id not in restarted.jobs["a"].run.commits


def test_a_part_file_is_published_with_its_commit_and_one_whose_output_is_gone_runs_again() -> None:
    core = CoordinatorCore()
    core.handle(p.JobSubmitted("j", plan()), 0.0)
    drive = Driver(core)
    (first,) = drive.poll().assignments
    assert first.output is not None and first.output.key.endswith(first.attempt)  # its own object
    out = core.handle(p.WorkerPolled("n1", "inc", 2, 2, (), (), (AttemptReport(attempt=first.attempt, ok=True),)),
                      1.0)
    (write,) = [i for i in out if isinstance(i, p.WriteCommit)]
    assert write.publish == "/out/part-00000"
    # the record is written, but every replica of the attempt's output is gone: it cannot be published
    out = core.handle(p.CommitWritten("j", write.record, write.record, lost="NotFoundError: no object"), 1.1)
    assert p.DeleteCommit("j", write.record.task_id, first.attempt) in out
    assert core.jobs["j"].run.state == "running"
    drive.seq, drive.now = 2, 1.1
    (second,) = drive.poll().assignments  # the task runs again, and its commit replaces the void record
    assert second.attempt != first.attempt and second.attempt.startswith(write.record.task_id)
    drive.poll(reports=(AttemptReport(attempt=second.attempt, ok=True),))
    assert core.finished["j"].state == "succeeded"


def test_a_restarted_coordinator_publishes_a_part_whose_commit_record_it_finds() -> None:
    core = CoordinatorCore()
    core.handle(p.JobSubmitted("j", plan()), 0.0)
    (spec,) = Driver(core).poll().assignments
    record = im.Commit(spec.attempt.split("#")[0], spec.attempt, ())
    stored = p.StoredJobView("j", plan(), "running", 0.0, 0.0, None, None,
                             ((spec.attempt, "n1", 0.0, None, None, ""),))
    restarted = CoordinatorCore(incarnation=2)
    todo = restart.restore_job(restarted, stored, None, 5.0)
    assert todo == [record.task_id]
    todo, out = restart.replayed(restarted, "j", {record.task_id: record}, stored, 5.0)
    # not taken as done: the record is written again (it stays in force) and the part published
    assert out == [p.WriteCommit("j", record, frozenset(), "/out/part-00000")]
    assert restarted.jobs["j"].run.state == "running"
    out = restarted.handle(p.CommitWritten("j", record, record), 5.1)
    assert restarted.jobs["j"].run.state == "succeeded"
    assert [i for i in out if isinstance(i, p.Finalize) and i.succeeded]


def test_a_commit_record_in_force_that_its_job_never_started_is_replaced_not_taken() -> None:
    """A record of a deleted job of the same name that landed very late (a hint delivered after the sweep)
    is in force when this job commits the task: it is void, and the write is done again over it."""
    core = CoordinatorCore()
    core.handle(p.JobSubmitted("j", plan(steps=(StepPlan(map_only=False, reducers=1),))), 0.0)
    (spec,) = next(i for i in core.handle(p.WorkerPolled("n1", "inc", 1, 2), 1.0)
                   if isinstance(i, p.ReplyToWorker)).assignments
    done = AttemptReport(attempt=spec.attempt, ok=True, partitions=(0,))
    (write,) = [i for i in core.handle(p.WorkerPolled("n1", "inc", 2, 2, (), (), (done,)), 2.0)
                if isinstance(i, p.WriteCommit)]
    foreign = im.Commit(write.record.task_id, write.record.task_id + "#0.3", (0,))
    (again,) = core.handle(p.CommitWritten("j", write.record, foreign), 2.1)
    assert isinstance(again, p.WriteCommit) and again.record == write.record
    assert foreign.attempt in again.superseded
    assert not core.jobs["j"].run.commits
    core.handle(p.CommitWritten("j", again.record, again.record), 2.2)
    assert core.jobs["j"].run.commits[write.record.task_id].attempt == spec.attempt


def test_a_job_that_succeeded_is_finalized_after_a_restart_not_run_again() -> None:
    """Its cleanup deletes the commit records: a coordinator that died before noting the job finalized learns
    from the status kept when the job ended that it is done, and finishes the cleanup (it is idempotent)."""
    core = CoordinatorCore()
    core.handle(p.JobSubmitted("j", plan()), 0.0)
    (spec,) = next(i for i in core.handle(p.WorkerPolled("n1", "inc", 1, 2), 1.0)
                   if isinstance(i, p.ReplyToWorker)).assignments
    done = AttemptReport(attempt=spec.attempt, ok=True, counters=(("words", "seen", 7),))
    (write,) = [i for i in core.handle(p.WorkerPolled("n1", "inc", 2, 2, (), (), (done,)), 2.0)
                if isinstance(i, p.WriteCommit)]
    out = core.handle(p.CommitWritten("j", write.record, write.record), 2.1)
    (ended,) = [i for i in out if isinstance(i, p.PersistEnded)]
    assert out.index(ended) < next(n for n, i in enumerate(out) if isinstance(i, p.Finalize))  # kept first
    assert ended.state == "succeeded" and ended.status is not None and ended.status.maps_done == 1
    assert ended.status.counters == (("words", "seen", 7),)
    # the cleanup ran (the records are gone), its answer never came: the coordinator restarts
    stored = p.StoredJobView("j", plan(), "succeeded", 0.0, ended.ended, None, None,
                             ((spec.attempt, "n1", 1.0, 2.0, True, ""),), ended.status)
    restarted = CoordinatorCore(incarnation=2)
    assert restart.restore_job(restarted, stored, None, 5.0) == []  # no commit record to look up
    assert restarted.jobs["j"].run.status(5.0).state == "finishing"
    (finalize,) = [i for i in restart.after_restore(restarted, 5.0) if isinstance(i, p.Finalize)]
    assert finalize.succeeded and finalize.attempts == ((spec.attempt, range(0)),)
    reply = next(i for i in restarted.handle(p.WorkerPolled("n1", "inc2", 1, 2), 9.0)
                 if isinstance(i, p.ReplyToWorker))
    assert reply.assignments == ()  # nothing runs again
    (final,) = [i for i in restarted.handle(p.FinalizeDone("j"), 9.1) if isinstance(i, p.PersistFinalized)]
    assert final.state == "succeeded" and final.status.state == "succeeded"
    assert final.status.maps_done == 1 and final.status.counters == ended.status.counters


def test_a_submitted_plan_is_kept_with_the_cluster_s_slots_which_decide_how_small_files_are_packed() -> None:
    core = CoordinatorCore(CoreSettings())
    small = tuple((f"/in/f{i:03d}", 200_000) for i in range(400))  # 80 MB, and 6.5 MB of open costs
    (persisted,) = [i for i in core.handle(p.JobSubmitted("before", plan(inputs=small, split_size=64 << 20)), 0.0)
                    if isinstance(i, p.PersistJob)]
    assert persisted.plan.task_slots == 0  # no worker has polled yet: 16 tasks
    core.handle(p.WorkerPolled("n1", "inc", 1, 1, ("before/s0-m0#1",)), 0.1)  # 2 slots, one busy
    core.handle(p.WorkerPolled("n2", "inc", 1, 3), 0.2)
    (persisted,) = [i for i in core.handle(p.JobSubmitted("after", plan(inputs=small, split_size=64 << 20)), 0.3)
                    if isinstance(i, p.PersistJob)]
    assert persisted.plan.task_slots == 5
    maps = {name: len([t for t in jc.run.tasks.values() if t.kind == "map"]) for name, jc in core.jobs.items()}
    assert 16 <= maps["before"] <= 17 and 20 <= maps["after"] <= 21, maps  # over 16 ways, then 4 per slot
    restored = JobRun("after", persisted.plan, Scheduler())
    restored.start(0.0)
    assert len([t for t in restored.tasks.values() if t.kind == "map"]) == maps["after"], "the same tasks again"
