from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dynamr.errors import BadRequestError
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.jobplan import check_plan, dump_plan, load_plan
from dynamr.mapreduce.jobrun import JobPlan, JobRun, StepPlan, task_of
from dynamr.mapreduce.scheduler import Scheduler
from dynamr.mapreduce.splits import INPUT_FORMATS
from dynamr.rpc.codec import pack_any
from dynamr.rpc.messages import AttemptReport, TaskInput, TaskOutput, TaskSpec


def plan(**changes: Any) -> JobPlan:
    base = JobPlan(source="/jobs/j.py", source_name="j.py", inputs=(("/in/a", 250), ("/in/b", 50)),
                   output="/out", steps=(StepPlan(map_only=False, reducers=2), StepPlan(map_only=False, reducers=1)),
                   split_size=100)
    return dataclasses.replace(base, **changes)


def drive(run: JobRun, sched: Scheduler, fail: set[str] = frozenset(),  # type: ignore[assignment]
          losses: dict[str, list[str]] | None = None) -> list[TaskSpec]:
    """Run a job on one node until it ends; returns every attempt's spec. Attempts of tasks in ``fail``
    raise. ``losses``: reader task -> producer tasks whose output its next attempts find lost (one producer
    per attempt, in order); a reader sees the commit records of its spec. Every spec of a round is built
    before any result is reported, as the coordinator does."""
    specs = []
    now = 0.0
    losses = losses or {}
    while run.state == "running":
        run.gate()  # as the coordinator's core does before every assignment
        assignments = [(a, run.spec_for(a, now)) for a in sched.offer("n1", 10, now)]
        assert assignments, "the job is stuck"
        for a, spec in assignments:
            specs.append(spec)
            if a.task_id in fail:
                if run.on_failure(AttemptReport(attempt=a.attempt_id, ok=False, error="boom", traceback="tb"), now):
                    return specs
                continue
            if losses.get(a.task_id):
                producer = losses[a.task_id].pop(0)
                read = {c.task_id: c.attempt for c in spec.commits}
                read.update({spec.producer.task_id: spec.producer.attempt} if spec.producer else {})
                run.on_input_lost(lost(a.attempt_id, producer, read[producer]), now)
                continue
            parts = list(range(spec.num_partitions)) if spec.kind == "map" else []
            record = run.on_success(AttemptReport(attempt=a.attempt_id, ok=True, partitions=tuple(parts),
                                                  counters=(("g", "n", 1),)), now)
            assert record is not None
            run.committed(record, now)
        now += 1
    return specs


def lost(reader: str, task: str, attempt: str) -> AttemptReport:
    return AttemptReport(attempt=reader, ok=False, cause="input_lost", lost_task=task, lost_attempt=attempt,
                         error=f"InputLostError: the committed output of task {task} cannot be read")


def test_two_step_job_runs_maps_then_reduces_then_next_step() -> None:
    sched = Scheduler()
    run = JobRun("j1", plan(), sched)
    run.start(0)
    specs = drive(run, sched)
    assert run.state == "succeeded"
    kinds = [(s.kind, s.step) for s in specs]
    # 250 bytes -> 3 splits, 50 -> 1 split; then 2 reduces; then 2 maps over the reduce outputs; then 1 reduce
    assert kinds == [("map", 0)] * 4 + [("reduce", 0)] * 2 + [("map", 1)] * 2 + [("reduce", 1)]
    # each attempt writes its own object; the next step reads the committed attempt's, and the last step's
    # part is published at its path by the coordinator when its commit record is written
    first_reduce = specs[4].attempt
    assert specs[4].output == TaskOutput(kind="object", key=f"o:mr:j1/whole/{first_reduce}")
    assert specs[6].input == TaskInput(kind="object", key=f"o:mr:j1/whole/{first_reduce}")
    assert specs[6].producer is not None and specs[6].producer.attempt == first_reduce
    last = specs[-1].attempt
    assert specs[-1].output == TaskOutput(kind="store", path="/out/part-00000", key=f"o:mr:j1/whole/{last}")
    assert run.publish_path(task_of(last)) == "/out/part-00000"
    assert run.publish_path(task_of(first_reduce)) == ""
    assert len(specs[4].commits) == 4
    assert run.status(100).counters == (("g", "n", 9),)


def test_map_only_last_step_writes_parts_from_maps() -> None:
    sched = Scheduler()
    run = JobRun("j2", plan(steps=(StepPlan(map_only=True, reducers=0),), local_output=True), sched)
    run.start(0)
    specs = drive(run, sched)
    assert run.state == "succeeded"
    assert sorted(s.output.path for s in specs if s.output) == [f"/out/part-{i:05d}" for i in range(4)]
    assert {s.output.kind for s in specs if s.output} == {"local"}


def test_a_task_that_keeps_failing_fails_the_job_with_its_traceback() -> None:
    sched = Scheduler(max_attempts=4)
    run = JobRun("j3", plan(), sched)
    run.start(0)
    drive(run, sched, fail={"j3/s0-m1"})
    status = run.status(100)
    assert status.state == "finishing"  # until the coordinator has cleaned up
    run.finalized = True
    status = run.status(100)
    assert status.state == "failed"
    assert status.error.task == "j3/s0-m1" and status.error.traceback == "tb"
    assert status.error.input.path == "/in/a"
    assert sum(1 for a in status.attempts if a.task == "j3/s0-m1" and not a.ok) == 4


def test_plan_round_trips_as_kept_and_old_json_plans_still_load() -> None:
    p = plan(options=(("pattern", "x"),), partition_state=pack_any(["m", "t"]))
    assert load_plan(dump_plan(p)) == p
    old = ('{"source": "/jobs/j.py", "source_name": "j.py", "inputs": [["/in/a", 250], ["/in/b", 50]], '
           '"output": "/out", "steps": [{"map_only": false, "reducers": 2}, {"map_only": false, "reducers": 1}], '
           '"split_size": 100, "options": {"pattern": "x"}, "partition_state": ["m", "t"]}')
    assert load_plan(old) == p
    assert im.Commit("t", "t#1", (0, 2)) == im.Commit.decode(im.Commit("t", "t#1", (0, 2)).encode())


def test_embedded_jobs_keep_intermediate_data_in_local_files() -> None:
    sched = Scheduler()
    run = JobRun("j4", plan(local_intermediate="/scratch/mr"), sched)
    run.start(0)
    specs = drive(run, sched)
    assert run.state == "succeeded"
    assert all(s.local_intermediate == "/scratch/mr" for s in specs)
    # in the attempt's own folder, which goes with the attempt's map outputs
    folder = specs[4].attempt.replace("/", "_")
    assert specs[4].output == TaskOutput(kind="file", path=f"/scratch/mr/j4/{folder}/whole.run")
    assert specs[6].input == TaskInput(kind="file", path=f"/scratch/mr/j4/{folder}/whole.run")



def test_a_lost_map_output_runs_that_map_again_and_its_reader_is_not_charged() -> None:
    sched = Scheduler(max_attempts=3)
    run = JobRun("j5", plan(steps=(StepPlan(map_only=False, reducers=2),)), sched)
    run.start(0)
    specs = drive(run, sched, losses={"j5/s0-r0": ["j5/s0-m1", "j5/s0-m1"]})
    assert run.state == "succeeded"
    tasks = [s.attempt.split("#")[0] for s in specs]
    assert tasks.count("j5/s0-m1") == 3 and tasks.count("j5/s0-m0") == 1  # only the lost map runs again
    assert tasks.count("j5/s0-r0") == 3
    # each reduce attempt after a loss reads the new commit, never the lost one
    m1_attempts = [s.attempt for s in specs if s.attempt.startswith("j5/s0-m1#")]
    r0_reads = [{c.task_id: c.attempt for c in s.commits}["j5/s0-m1"]
                for s in specs if s.attempt.startswith("j5/s0-r0#")]
    assert r0_reads == m1_attempts
    assert set(run.superseded) == set(m1_attempts[:2])
    assert sched.tasks["j5/s0-r0"].errors == 0  # the reader was not at fault (two failures, none counted)
    assert run.status(100).counters == (("g", "n", 6),)  # 4 maps + 2 reduces: a void commit's counters drop


def test_two_readers_of_one_lost_output_run_it_again_once() -> None:
    sched = Scheduler()
    run = JobRun("j6", plan(steps=(StepPlan(map_only=False, reducers=2),)), sched)
    run.start(0)
    specs = drive(run, sched, losses={"j6/s0-r0": ["j6/s0-m2"], "j6/s0-r1": ["j6/s0-m2"]})
    assert run.state == "succeeded"
    tasks = [s.attempt.split("#")[0] for s in specs]
    assert tasks.count("j6/s0-m2") == 2


def test_a_lost_step_output_runs_its_reduce_again_then_the_next_steps_map() -> None:
    sched = Scheduler()
    run = JobRun("j7", plan(), sched)
    run.start(0)
    specs = drive(run, sched, losses={"j7/s1-m1": ["j7/s0-r1"]})
    assert run.state == "succeeded"
    tasks = [s.attempt.split("#")[0] for s in specs]
    assert tasks.count("j7/s0-r1") == 2 and tasks.count("j7/s0-r0") == 1
    assert tasks.count("j7/s1-m1") == 2 and tasks.count("j7/s1-m0") == 1
    assert tasks.count("j7/s1-r0") == 1
    # the reduce ran again after the map found its output lost, and before that map ran again
    r1 = [i for i, t in enumerate(tasks) if t == "j7/s0-r1"]
    m1 = [i for i, t in enumerate(tasks) if t == "j7/s1-m1"]
    assert m1[0] < r1[1] < m1[1]


def test_an_output_lost_again_and_again_fails_the_job_with_a_clear_error() -> None:
    sched = Scheduler(max_attempts=2)
    run = JobRun("j8", plan(steps=(StepPlan(map_only=False, reducers=1),)), sched)
    run.start(0)
    drive(run, sched, losses={"j8/s0-r0": ["j8/s0-m0", "j8/s0-m0"]})
    assert run.state == "failed"
    assert run.error is not None and run.error.task == "j8/s0-m0"
    assert "was lost 2 times" in run.error.error and "run the job again" in run.error.error


def test_a_stale_report_of_an_output_already_produced_again_changes_nothing() -> None:
    sched = Scheduler()
    run = JobRun("j9", plan(steps=(StepPlan(map_only=False, reducers=1),)), sched)
    run.start(0)
    for a in sched.offer("n1", 10, 0):
        run.spec_for(a, 0)
        record = run.on_success(AttemptReport(attempt=a.attempt_id, ok=True, partitions=(0,)), 0)
        assert record is not None
        run.committed(record, 0)
    (reduce,) = sched.offer("n1", 10, 1)
    assert run.on_input_lost(lost(reduce.attempt_id, "j9/s0-m0", "j9/s0-m0#999"), 1) is None
    assert "j9/s0-m0" in run.commits and not run.superseded
    assert sched.tasks["j9/s0-r0"].state.value == "pending"  # its inputs are all there: it runs again


def test_every_input_format_passes_the_plan_check_and_whole_inputs_are_one_split_each() -> None:
    for fmt in INPUT_FORMATS:  # "bytes" was refused by the coordinator once, though jobs may ask for it
        check_plan(plan(input_format=fmt))
    with pytest.raises(BadRequestError, match="unknown input format 'xml'"):
        check_plan(plan(input_format="xml"))
    with pytest.raises(BadRequestError, match="whole inputs"):
        check_plan(plan(whole_inputs=("/in/a", 3)))  # type: ignore[arg-type]
    sched = Scheduler()
    run = JobRun("jw", plan(whole_inputs=("/in/a",)), sched)
    run.start(0)
    splits = sorted((s.path, s.start) for t in run.tasks.values() if t.kind == "map" and t.step == 0
                    for s in t.splits())
    assert splits == [("/in/a", 0), ("/in/b", 0)]  # a is 250 bytes, split size 100: one split all the same


def test_map_tasks_are_queued_largest_split_first() -> None:
    sched = Scheduler()
    run = JobRun("jl", plan(inputs=(("/in/small", 30), ("/in/big", 250), ("/in/mid", 90))), sched)
    run.start(0)
    queued = sorted((t for t in sched.tasks.values() if t.phase.endswith("s0-m")), key=lambda t: t.order)
    assert [t.weight for t in queued] == sorted((t.weight for t in queued), reverse=True)
    assert [t.weight for t in queued] == [90, 84, 83, 83, 30]  # big is cut in three even splits
    packed = JobRun("jg", plan(inputs=(("/in/big", 250), ("/in/small.gz", 30))), Scheduler())
    packed.start(0)
    order = sorted((t for t in packed.scheduler.tasks.values() if t.phase.endswith("s0-m")), key=lambda t: t.order)
    # a compressed file is one split, counted as the text it holds: queued first, and not taken for slow
    assert [(packed.tasks[t.task_id].split().path, t.weight) for t in order] == [  # type: ignore[union-attr]
        ("/in/small.gz", 120), ("/in/big", 84), ("/in/big", 83), ("/in/big", 83)]


def test_compressed_output_names_the_parts_for_their_codec_and_the_plan_check_knows_the_codecs() -> None:
    for codec in ("gzip", "bzip2", "xz", ""):
        check_plan(plan(output_compression=codec))
    with pytest.raises(BadRequestError, match="output compression must be one of gzip, bzip2, xz, not 'zip'"):
        check_plan(plan(output_compression="zip"))
    run = JobRun("jz", plan(output_compression="gzip"), Scheduler())
    run.start(0)
    assert [path for t in sorted(run.tasks) if (path := run.publish_path(t))] == ["/out/part-00000.gz"]
    plain = JobRun("jp", plan(), Scheduler())
    plain.start(0)
    assert [path for t in sorted(plain.tasks) if (path := plain.publish_path(t))] == ["/out/part-00000"]
