from __future__ import annotations

from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.jobrun import JobPlan, JobRun, StepPlan
from dynamr.mapreduce.scheduler import Scheduler


def plan(**changes: object) -> JobPlan:
    base = JobPlan(source="/jobs/j.py", source_name="j.py", inputs=[("/in/a", 250), ("/in/b", 50)],
                   output="/out", steps=[StepPlan(map_only=False, reducers=2), StepPlan(map_only=False, reducers=1)],
                   split_size=100)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def drive(run: JobRun, sched: Scheduler, fail: set[str] = frozenset()) -> list[dict[str, object]]:  # type: ignore[assignment]
    specs = []
    now = 0.0
    while run.state == "running":
        assignments = sched.offer("n1", 10, now)
        assert assignments, "the job is stuck"
        for a in assignments:
            spec = run.spec_for(a, {"seeds": []})
            specs.append(spec)
            if a.task_id in fail:
                if run.on_failure(a.attempt_id, {"error": "boom", "traceback": "tb"}, now):
                    return specs
                continue
            parts = list(range(spec.get("num_partitions", 0))) if spec["kind"] == "map" else []
            record = run.on_success(a.attempt_id, {"partitions": parts, "counters": [["g", "n", 1]]}, now)
            assert record is not None
            run.committed(record, now)
        now += 1
    return specs


def test_two_step_job_runs_maps_then_reduces_then_next_step() -> None:
    sched = Scheduler()
    run = JobRun("j1", plan(), sched)
    run.start(0)
    specs = drive(run, sched)
    assert run.state == "succeeded"
    kinds = [(s["kind"], s["step"]) for s in specs]
    # 250 bytes -> 3 splits, 50 -> 1 split; then 2 reduces; then 2 maps over the reduce outputs; then 1 reduce
    assert kinds == [("map", 0)] * 4 + [("reduce", 0)] * 2 + [("map", 1)] * 2 + [("reduce", 1)]
    assert specs[6]["input"] == {"kind": "object", "key": "mr:j1/step0/0"}
    assert specs[-1]["output"] == {"kind": "store", "path": "/out/part-00000"}
    assert specs[4]["output"] == {"kind": "object", "key": "mr:j1/step0/0"}
    assert len(specs[4]["commits"]) == 4
    assert run.status()["counters"] == [["g", "n", 9]]


def test_map_only_last_step_writes_parts_from_maps() -> None:
    sched = Scheduler()
    run = JobRun("j2", plan(steps=[StepPlan(map_only=True, reducers=0)], local_output=True), sched)
    run.start(0)
    specs = drive(run, sched)
    assert run.state == "succeeded"
    assert [s["output"] for s in specs] == [{"kind": "local", "path": f"/out/part-{i:05d}"} for i in range(4)]


def test_a_task_that_keeps_failing_fails_the_job_with_its_traceback() -> None:
    sched = Scheduler(max_attempts=4)
    run = JobRun("j3", plan(), sched)
    run.start(0)
    drive(run, sched, fail={"j3/s0-m1"})
    status = run.status()
    assert status["state"] == "finishing"  # until the coordinator has cleaned up
    run.finalized = True
    status = run.status()
    assert status["state"] == "failed"
    assert status["error"]["task"] == "j3/s0-m1" and status["error"]["traceback"] == "tb"
    assert status["error"]["input"]["path"] == "/in/a"
    assert sum(1 for a in status["attempts"] if a["task"] == "j3/s0-m1" and not a["ok"]) == 4


def test_plan_round_trips_as_json() -> None:
    p = plan(options={"pattern": "x"}, partition_state=["m", "t"])
    assert JobPlan.from_json(p.to_json()) == p
    assert im.Commit("t", "t#1", (0, 2)) == im.Commit.decode(im.Commit("t", "t#1", (0, 2)).encode())


def test_embedded_jobs_keep_intermediate_data_in_local_files() -> None:
    sched = Scheduler()
    run = JobRun("j4", plan(local_intermediate="/scratch/mr"), sched)
    run.start(0)
    specs = drive(run, sched)
    assert run.state == "succeeded"
    assert all(s["local_intermediate"] == "/scratch/mr" for s in specs)
    assert specs[4]["output"] == {"kind": "file", "path": "/scratch/mr/j4/step0/0.run"}
    assert specs[6]["input"] == {"kind": "file", "path": "/scratch/mr/j4/step0/0.run"}
